"""The offline rerank order of a bundle for one history, computed without any service code: the teacher's
top-N from the bundle's own files (exported encoder, item embeddings; history masked), then training's
candidate-label ranker (training.llm.core.ranker, transformers fp32) on the bundle's adapter and soft
prompt, blended as the spec says and sorted descending with ties in retrieval order. The served order must
equal it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbundle import load_manifest
from recbundle.rerank import blend


def teacher_top(bundle: Path, history: list[int], n: int) -> list[tuple[int, float]]:
    """(item_id, inner product) of the n best unseen items, best first."""
    m = load_manifest(bundle)
    emb = np.load(bundle / m.index.embeddings_path)  # (n_items + 1, dim), row 0 = padding
    encoder = torch.export.load(str(bundle / m.encoder.path)).module()
    seq = torch.zeros((1, m.encoder.max_len), dtype=torch.int64)
    tail = history[-m.encoder.max_len :]
    seq[0, -len(tail) :] = torch.tensor(tail)
    with torch.no_grad():
        user = encoder(seq)[0].float().numpy()  # (dim,)
    scores = emb[1:] @ user  # item i at row i - 1
    seen = set(history)
    best = [int(i) + 1 for i in np.argsort(-scores, kind="stable") if int(i) + 1 not in seen][:n]
    return [(i, float(scores[i - 1])) for i in best]


def offline_rerank(bundle: Path, model_dir: str | Path, history: list[int]) -> list[tuple[int, float]]:
    """(item_id, blended score) of the spec's N candidates in the offline ranker's order."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.llm.core.ranker import LabelRanker, RankItem
    from training.llm.core.soft_prompt import SoftPrompt

    m = load_manifest(bundle)
    spec = m.llm.rerank
    assert spec is not None
    top = teacher_top(bundle, history, spec.n_candidates)
    titles: list[str | None] = [None] * (m.n_items + 1)
    for line in (bundle / m.catalogue_path).read_text().splitlines():
        item = json.loads(line)
        titles[item["item_id"]] = item["title"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if spec.adapter is not None:
        model = PeftModel.from_pretrained(model, str(bundle / m.llm.lora_adapters[spec.adapter]))
    soft = SoftPrompt.load(bundle / m.llm.soft_prompt) if spec.soft_prompt and m.llm.soft_prompt else None
    item = RankItem(history, [i for i, _ in top], -1)
    llm = LabelRanker(tokenizer, titles, spec).scores(model, [item], soft)[0]
    final = blend([s for _, s in top], [float(x) for x in llm], spec.blend_lambda)
    order = sorted(range(len(top)), key=lambda j: (-final[j], j))
    return [(top[j][0], final[j]) for j in order]
