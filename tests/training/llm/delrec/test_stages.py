"""DELRec's stages on a tiny random Llama: stage 1 moves only the soft prompt, stage 2 only LoRA; the task
builders keep validation and test targets out of training; the dynamic weighting follows its formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recbundle.rerank import RerankSpec
from training.data.types import SequenceDataset, Split
from training.llm.core.model import EncoderConfig, LoraSettings, load_base
from training.llm.core.ranker import LabelRanker, RankItem
from training.llm.core.soft_prompt import SoftPrompt
from training.llm.core.tuning import TuneConfig, _gradnorm_weights
from training.llm.delrec import tasks
from training.llm.delrec.distill import distill_soft_prompt
from training.llm.delrec.tune import tune_ranker

N_CAND = 8


@pytest.fixture()
def model_and_ranker(tiny_llm_dir: Path, toy_dataset: SequenceDataset) -> tuple[object, LabelRanker]:
    model, tok = load_base(EncoderConfig(str(tiny_llm_dir), device="cpu"))
    titles = [None] + [m.title for m in toy_dataset.items]
    spec = RerankSpec(n_candidates=N_CAND, labels=list("ABCDEFGH"), history_items=3)
    return model, LabelRanker(tok, titles, spec)


def _teacher(split: Split):  # a deterministic stand-in teacher: the most recent unseen ids
    def top(hists: list[np.ndarray], k: int) -> np.ndarray:
        out = []
        for h in hists:
            seen = set(h.tolist())
            out.append([i for i in range(split.n_items, 0, -1) if i not in seen][:k])
        return np.array(out)

    return top


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_stage1_changes_only_the_soft_prompt(model_and_ranker: tuple, toy_split: Split) -> None:
    model, ranker = model_and_ranker
    users = np.arange(6)
    rps = tasks.rps_items(toy_split, users, 1, N_CAND, 4, 2, _teacher(toy_split), seed=0)
    ta = tasks.ta_items(toy_split, users, 1, N_CAND, seed=0)
    before = _snapshot(model)
    start = SoftPrompt.from_vocabulary(model.get_input_embeddings().weight, 3, seed=0).vectors.detach().clone()
    soft, result = distill_soft_prompt(model, ranker, rps, ta, 3, TuneConfig(batch_size=2, lr=0.05,
                                       weighting="gradnorm", max_steps=2))
    after = _snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before), "stage 1 changed an LLM weight"
    assert not any(p.requires_grad for p in model.parameters())
    assert not torch.allclose(soft.vectors, start), "the soft prompt did not move"
    assert set(result.step_weight) == {"rps", "ta"}
    assert all(abs(w1 + w2 - 1) < 1e-6 for w1, w2 in zip(*result.step_weight.values(), strict=True))


def test_stage2_changes_only_lora(model_and_ranker: tuple, toy_split: Split) -> None:
    model, ranker = model_and_ranker
    soft = SoftPrompt.from_vocabulary(model.get_input_embeddings().weight, 3, seed=1)
    soft_before = soft.vectors.detach().clone()
    base_before = _snapshot(model)
    items = tasks.rec_items(toy_split, np.arange(6), 1, N_CAND, seed=0)
    peft_model, _ = tune_ranker(model, ranker, items, LoraSettings(4, 8, 0.0, ["q_proj", "v_proj"]), "lora",
                                TuneConfig(batch_size=2, lr=0.05, max_steps=2), soft)
    assert torch.equal(soft.vectors, soft_before), "stage 2 moved the soft prompt"
    changed_lora = 0
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            changed_lora += int(p.abs().sum() > 0 and "lora_B" in name)  # B starts at zero
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(p, base_before[key]), f"stage 2 changed base weight {key}"
    assert changed_lora > 0


def test_adalora_option_trains(model_and_ranker: tuple, toy_split: Split) -> None:
    model, ranker = model_and_ranker
    items = tasks.rec_items(toy_split, np.arange(4), 1, N_CAND, seed=0)
    peft_model, result = tune_ranker(model, ranker, items, LoraSettings(4, 8, 0.0, ["q_proj", "v_proj"]),
                                     "adalora", TuneConfig(batch_size=2, lr=0.05, max_steps=2), None)
    assert type(peft_model.peft_config["default"]).__name__ == "AdaLoraConfig"
    assert len(result.step_loss["rec"]) == 2


def test_training_questions_never_use_validation_or_test_targets(toy_split: Split) -> None:
    users = np.arange(toy_split.n_users)
    for it in tasks.rec_items(toy_split, users, 3, N_CAND, seed=0):
        u = next(u for u in users if list(toy_split.train[u][: len(it.history)]) == it.history
                 and len(toy_split.train[u]) > len(it.history))
        assert it.candidates[it.target] == toy_split.train[u][len(it.history)]
        others = set(it.candidates) - {it.candidates[it.target]}
        assert not others & ({int(toy_split.valid_target[u]), int(toy_split.test_target[u])} | set(toy_split.train[u]))
    for it in tasks.ta_items(toy_split, users, 2, N_CAND, seed=0):
        assert it.task == "ta" and it.target == 0 and {"example_item", "example_next", "next_item"} <= set(it.fields)


def test_rps_target_is_the_teachers_top1_and_hints_are_its_next(toy_split: Split) -> None:
    teacher = _teacher(toy_split)
    items = tasks.rps_items(toy_split, np.arange(4), 2, N_CAND, 4, 2, teacher, seed=0)
    for it in items:
        top = teacher([np.array(it.history)], 6)[0]
        assert it.candidates[it.target] == top[0] and it.candidates[:4] == list(top[:4])
        assert it.fields["hints"] == f"#{top[1]}; #{top[2]}"


def test_gradnorm_weights_follow_the_official_rule() -> None:
    # r_t = 1 / ||g_t||, w_t = r_t^0.5 / sum r^0.5: norms 3 and 4 -> r = 1/3, 1/4
    grads = {"a": (torch.tensor([3.0, 0.0]),), "b": (torch.tensor([0.0, 4.0]),)}
    w = _gradnorm_weights(grads, 0.5)
    ra, rb = (1 / 3) ** 0.5, (1 / 4) ** 0.5
    assert w["a"] == pytest.approx(ra / (ra + rb)) and w["b"] == pytest.approx(rb / (ra + rb))


def test_protocol_questions_use_the_cand20_candidates_shuffled(toy_split: Split) -> None:
    from training.eval.protocols import build_candidates

    users = np.arange(5)
    items = tasks.protocol_items(toy_split, "test", users, 2024)
    table = build_candidates(toy_split, "cand20", "test", 2024, users)
    assert table is not None
    for row, it in enumerate(items):
        assert sorted(it.candidates) == sorted(table[row].tolist())
        assert it.candidates[it.target] == toy_split.test_target[row]
    assert len({it.target for it in items}) > 1  # not always the first position


def test_rank_items_render_every_task(model_and_ranker: tuple, toy_split: Split) -> None:
    _, ranker = model_and_ranker
    rps = tasks.titled(tasks.rps_items(toy_split, np.arange(2), 1, N_CAND, 4, 2, _teacher(toy_split), 0),
                       ranker.titles, 40)
    text = ranker.prompt_text(rps[0])
    assert "sequential recommender" in text and "#" not in text.split("among others:")[1].split("\n")[0]
    assert isinstance(RankItem([1], [2, 3], 0).shuffled(np.random.default_rng(0)), RankItem)
