"""The shared loop with mixed tasks: a ranking task and a text task train together, fixed weights scale each
task's gradient, a task of weight 0 is exactly the run without it, and a task's batches do not depend on
which other tasks run beside it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recbundle.rerank import RerankSpec
from training.data.types import SequenceDataset
from training.llm.core.model import EncoderConfig, load_base
from training.llm.core.ranker import LabelRanker, RankItem
from training.llm.core.soft_prompt import SoftPrompt
from training.llm.core.text_task import TextItem, TextScorer
from training.llm.core.tuning import TuneConfig, _step, planned_steps, train_ranker

RANK = [RankItem([1, 2, 3], [4, 5, 6, 7], 1), RankItem([11, 12], [13, 14, 15, 16], 3),
        RankItem([21, 22, 23], [24, 25, 26, 27], 0), RankItem([31], [32, 33, 34, 35], 2)]
TEXT = [TextItem("Item: Space story number 3", "space; rockets", "label"),
        TextItem("Item: Romance story number 12", "romance; letters", "label")]


@pytest.fixture()
def setup(tiny_llm_dir: Path, toy_dataset: SequenceDataset) -> tuple[object, LabelRanker, SoftPrompt]:
    model, tok = load_base(EncoderConfig(str(tiny_llm_dir), device="cpu"))
    for p in model.parameters():
        p.requires_grad_(False)
    titles = [None] + [m.title for m in toy_dataset.items]
    ranker = LabelRanker(tok, titles, RerankSpec(n_candidates=4, labels=list("ABCD"), history_items=3))
    return model, ranker, SoftPrompt.from_vocabulary(model.get_input_embeddings().weight, 2, seed=0)


def test_fixed_weights_scale_each_tasks_gradient(setup: tuple) -> None:
    model, ranker, soft = setup
    text = TextScorer(ranker.tokenizer)
    g_rank = torch.autograd.grad(ranker.loss(model, RANK[:2], soft), [soft.vectors])[0]
    g_text = torch.autograd.grad(text.loss(model, TEXT, soft), [soft.vectors])[0]
    cfg = TuneConfig(task_weights={"rec": 0.5, "label": 2.0})
    losses, weights = _step(model, ranker, text, soft, {"rec": RANK[:2], "label": TEXT}, [soft.vectors], cfg)
    assert weights == {"rec": 0.5, "label": 2.0} and set(losses) == {"rec", "label"}
    torch.testing.assert_close(soft.vectors.grad, 0.5 * g_rank + 2.0 * g_text)


def _train(setup: tuple, tasks: dict, weights: dict[str, float]) -> tuple[torch.Tensor, dict]:
    model, ranker, soft = setup
    start = soft.vectors.detach().clone()
    with torch.no_grad():
        soft.vectors.copy_(start)
    cfg = TuneConfig(batch_size=2, lr=0.05, max_steps=3, task_weights=weights, steps_from="rec")
    result = train_ranker(model, ranker, tasks, [soft.vectors], cfg, soft)
    out = soft.vectors.detach().clone()
    with torch.no_grad():
        soft.vectors.copy_(start)
    return out, result.step_loss


def test_a_task_of_weight_zero_changes_nothing(setup: tuple) -> None:
    alone, alone_loss = _train(setup, {"rec": RANK}, {})
    zero, zero_loss = _train(setup, {"rec": RANK, "label": TEXT}, {"label": 0.0})
    both, both_loss = _train(setup, {"rec": RANK, "label": TEXT}, {"label": 1.0})
    assert torch.equal(alone, zero) and zero_loss == alone_loss  # not run at all: no trace in the record
    assert not torch.allclose(alone, both), "the text task should move the soft prompt when it counts"
    # the "rec" batches are the same with or without the text task: step 1 sees the same loss
    assert both_loss["rec"][0] == pytest.approx(alone_loss["rec"][0], abs=1e-6)
    assert len(both_loss["label"]) == len(both_loss["rec"]) == 2  # an epoch = one pass over "rec"


def test_an_epoch_is_a_pass_over_the_named_task() -> None:
    tasks = {"rec": RANK, "label": TEXT * 5}  # 2 and 5 batches of 2
    assert planned_steps(tasks, TuneConfig(batch_size=2)) == 5
    assert planned_steps(tasks, TuneConfig(batch_size=2, steps_from="rec")) == 2
    assert planned_steps(tasks, TuneConfig(batch_size=2, task_weights={"label": 0.0})) == 2
    assert planned_steps({"rec": RANK, "empty": []}, TuneConfig(batch_size=2, max_steps=1)) == 1
