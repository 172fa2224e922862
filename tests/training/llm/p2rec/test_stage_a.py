from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.types import SequenceDataset, Split
from training.llm.core.model import EncoderConfig, LoraSettings, encode, load_base, pad_batch, pool
from training.llm.core.prompts import PromptConfig, catalogue_texts, user_prompt_ids
from training.llm.p2rec.categories import CategoryConfig, counts_targets, fit_categories
from training.llm.p2rec.efficiency import all_prefixes, label_lm_loss, measure_efficiency, sft_example
from training.llm.p2rec.stage_a import StageAConfig, load_stage_a, save_stage_a, stage_loss, train_stage_a


def test_pooling_ignores_padding() -> None:
    h = torch.arange(12, dtype=torch.float32).view(1, 3, 4).repeat(2, 1, 1)  # (2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(pool(h, mask, "mean")[0], h[0, :2].mean(0))
    torch.testing.assert_close(pool(h, mask, "last"), torch.stack([h[0, 1], h[1, 2]]))


def test_losses_are_zero_at_the_target() -> None:
    target = torch.tensor([[0.7, 0.2, 0.1]])
    logits = target.log()
    assert stage_loss(logits, target, "kl").item() == pytest.approx(0.0, abs=1e-6)
    assert stage_loss(logits, target, "mse").item() == pytest.approx(0.0, abs=1e-10)
    assert stage_loss(torch.zeros(1, 3), target, "kl").item() > 0


def test_stage_a_learns_saves_and_reloads(
    tiny_llm_dir: Path,
    toy_dataset: SequenceDataset,
    toy_split: Split,
    teacher_emb: np.ndarray,
    tmp_path: Path,
) -> None:
    enc = EncoderConfig(base_model=str(tiny_llm_dir), device="cpu")
    model, tok = load_base(enc)
    texts = catalogue_texts(toy_dataset.items, PromptConfig())
    pcfg = PromptConfig(max_history_items=8)
    prompts = [user_prompt_ids(s, texts, pcfg, tok) for s in toy_split.train]
    cats = fit_categories(teacher_emb, CategoryConfig(k=4))
    targets = counts_targets(toy_split.train, cats.category_of, 4)
    cfg = StageAConfig(epochs=2, batch_size=8, lr=5e-3, head_lr=3e-2, seed=0)
    res = train_stage_a(
        model, tok.pad_token_id, prompts, targets, cfg, LoraSettings(r=4, alpha=8, dropout=0.0)
    )
    assert res.n_train == 27 and res.n_valid == 3
    assert res.curves["train_loss"][1] < res.curves["train_loss"][0]
    assert len(res.curves["epoch_wall_s"]) == 2 and res.best_epoch in (1, 2)
    assert any(p.abs().sum() > 0 for n, p in res.model.named_parameters() if "lora_B" in n)

    save_stage_a(res.model, res.head, tmp_path / "a", {"note": "x"})
    assert (tmp_path / "a" / "adapter" / "adapter_config.json").is_file()
    model2, head2, tok2 = load_stage_a(tmp_path / "a", enc)
    ids, mask = pad_batch(prompts[:5], tok.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        before = res.head(encode(res.model, ids, mask, "mean"))
        after = head2(encode(model2, ids, mask, "mean"))
    torch.testing.assert_close(before, after)
    with (
        torch.no_grad(),
        model2.disable_adapter(),
    ):  # the LoRA itself moved the pooled state, not just the head
        assert not torch.allclose(encode(model2, ids, mask, "mean"), encode(res.model, ids, mask, "mean"))


def test_efficiency_is_measured_like_for_like(
    tiny_llm_dir: Path, toy_dataset: SequenceDataset, toy_split: Split, teacher_emb: np.ndarray
) -> None:
    model, tok = load_base(EncoderConfig(base_model=str(tiny_llm_dir), device="cpu"))
    texts = catalogue_texts(toy_dataset.items, PromptConfig())
    ids, labels = sft_example(toy_split.train[0][:2], int(toy_split.train[0][2]), texts, PromptConfig(), tok)
    n_label = sum(1 for x in labels if x != -100)
    assert len(ids) == len(labels) and n_label == len(tok(texts[int(toy_split.train[0][2])])["input_ids"]) + 1
    cats = fit_categories(teacher_emb, CategoryConfig(k=4))
    targets = counts_targets(toy_split.train, cats.category_of, 4)
    eff = measure_efficiency(
        model, tok, toy_split.train, texts, targets, cats.category_of, PromptConfig(), n_examples=4, batch_size=2
    )
    assert eff.device == f"cpu: {torch.get_num_threads()} threads"
    assert eff.n_prefixes == len(all_prefixes(toy_split.train)) == sum(len(s) - 1 for s in toy_split.train)
    assert eff.n_users == len(toy_split.train)
    for side in (eff.user_level, eff.instance_level, eff.instance_sft):
        assert side.n_measured == 4 and side.s_per_example > 0 and side.mean_tokens > 0
    # whole histories are longer than their prefixes on average
    assert eff.user_level.mean_tokens > eff.instance_level.mean_tokens
    rep = eff.report()
    assert rep["instance_level_epoch_s"] == pytest.approx(eff.instance_level.s_per_example * eff.n_prefixes)
    assert rep["ratio"] == pytest.approx(rep["user_level_epoch_s"] / rep["instance_level_epoch_s"])


def test_label_lm_loss_equals_the_full_causal_lm_loss(tiny_llm_dir: Path, toy_dataset: SequenceDataset) -> None:
    """Logits only at the labelled positions give the loss a standard trainer computes from all of them."""
    model, tok = load_base(EncoderConfig(base_model=str(tiny_llm_dir), device="cpu"))
    texts = catalogue_texts(toy_dataset.items, PromptConfig())
    pairs = [sft_example(np.array([1, 2, 3][:n]), 4 + n, texts, PromptConfig(), tok) for n in (1, 3)]
    ids, mask = pad_batch([p[0] for p in pairs], tok.pad_token_id, torch.device("cpu"))
    labels, _ = pad_batch([p[1] for p in pairs], -100, torch.device("cpu"))
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        ours = label_lm_loss(model, ids, mask, labels)
    torch.testing.assert_close(ours, full, rtol=1e-4, atol=1e-5)
