"""Build a small but real bundle for the service tests: an exported encoder, a catalogue, embeddings and a
FAISS index, checksummed by `recbundle.write_manifest`.

This stands in for `python -m training export ...` until that exists. The tests use `build_bundle` through
the `bundle_dir` fixture in conftest.py only; they rely on the bundle contract, on items 1-10 being
comedies, 11-20 dramas, ..., 41-50 animation (genre clusters in embedding space), and on the titles below.
A real-export smoke test can reuse the same fixtures with a bundle written by the training export.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import torch
from torch import nn

from recbundle import Manifest, RerankSpec, write_manifest
from recbundle.manifest import EncoderRef, IndexRef

GENRES = ["Comedy", "Drama", "Sci-Fi", "Horror", "Animation"]
TITLES = {
    "Comedy": [
        "Groundhog Day (1993)",
        "Annie Hall (1977)",
        "Young Frankenstein (1974)",
        "Some Like It Hot (1959)",
        "The Big Lebowski (1998)",
        "Clueless (1995)",
        "Airplane! (1980)",
        "Tootsie (1982)",
        "Dr. Strangelove (1964)",
        "Raising Arizona (1987)",
    ],
    "Drama": [
        "Casablanca (1942)",
        "Schindler's List (1993)",
        "The Godfather (1972)",
        "Taxi Driver (1976)",
        "Fargo (1996)",
        "Vertigo (1958)",
        "Chinatown (1974)",
        "Amadeus (1984)",
        "Rain Man (1988)",
        "Usual Suspects, The (1995)",
    ],
    "Sci-Fi": [
        "Blade Runner (1982)",
        "Alien (1979)",
        "The Matrix (1999)",
        "Star Wars (1977)",
        "Gattaca (1997)",
        "Brazil (1985)",
        "Contact (1997)",
        "Solaris (1972)",
        "Twelve Monkeys (1995)",
        "The Terminator (1984)",
    ],
    "Horror": [
        "The Shining (1980)",
        "Psycho (1960)",
        "Halloween (1978)",
        "The Exorcist (1973)",
        "Scream (1996)",
        "Candyman (1992)",
        "Poltergeist (1982)",
        "Nosferatu (1922)",
        "Carrie (1976)",
        "The Fly (1986)",
    ],
    "Animation": [
        "Toy Story (1995)",
        "Aladdin (1992)",
        "The Lion King (1994)",
        "Pinocchio (1940)",
        "Fantasia (1940)",
        "Akira (1988)",
        "Dumbo (1941)",
        "Bambi (1942)",
        "Mulan (1998)",
        "Antz (1998)",
    ],
}


class MeanPoolEncoder(nn.Module):
    """User vector = mean of the item embeddings at non-padding positions, through a linear map."""

    def __init__(self, item_emb: torch.Tensor) -> None:
        super().__init__()
        self.item_emb = nn.Embedding.from_pretrained(item_emb, freeze=True, padding_idx=0)
        dim = item_emb.shape[1]
        self.proj = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.proj.weight)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:  # (B, L) int64 -> (B, D)
        mask = (seqs > 0).unsqueeze(-1).to(torch.float32)  # (B, L, 1)
        summed = (self.item_emb(seqs) * mask).sum(dim=1)  # (B, D)
        return self.proj(summed / mask.sum(dim=1).clamp(min=1.0))


def catalogue() -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    for genre in GENRES:
        for title in TITLES[genre]:
            item_id = len(items) + 1
            items.append(
                {
                    "item_id": item_id,
                    "raw_id": str(1000 + item_id),
                    "title": title,
                    "description": f"A {genre.lower()} film.",
                    "categories": [genre],
                    "brand": None,
                }
            )
    return items


def item_embeddings(n_items: int, dim: int, seed: int) -> np.ndarray:
    """(n_items + 1, dim) float32, row 0 zeros; items of one genre cluster around a shared direction."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(GENRES), dim))
    emb = np.zeros((n_items + 1, dim), dtype=np.float32)
    for i in range(1, n_items + 1):
        emb[i] = centres[(i - 1) // 10 % len(GENRES)] + 0.3 * rng.normal(size=dim)
    return emb


def build_bundle(
    root: Path,
    *,
    dim: int = 16,
    max_len: int = 20,
    seed: int = 0,
    n_items: int | None = None,
    lora_adapter: Path | None = None,
    soft_prompt: np.ndarray | None = None,
    rerank: RerankSpec | None = None,
    rerank_adapter: Path | None = None,
    renumber: bool = False,
    cold_raw_ids: Sequence[str] = (),
    cold_items: Literal["skip", "reject"] = "skip",
    bundle_id: str | None = None,
    embeddings: np.ndarray | None = None,
    index: Any | None = None,
    index_ref: dict[str, Any] | None = None,
) -> Manifest:
    """Write a complete bundle into `root` (created) and return its manifest. `n_items` > 50 repeats titles
    with a suffix (for load tests). `lora_adapter` (a PEFT folder, copied in as the "explain" adapter),
    `soft_prompt` ((n_tokens, hidden) floats), `rerank` (the LLM ranker's spec) and `rerank_adapter` (copied
    in as "llm/rerank", under the spec's adapter name) go into the manifest's LLM reference.
    `cold_raw_ids`: catalogue rows the model does not know (item_id null, no embedding; handled as
    `cold_items` says); `renumber`: the model's dense ids in reverse catalogue order, as a retrain may number
    them (embeddings follow their items, so the same catalogue ids rank the same). `embeddings`
    ((n_items + 1, dim), row 0 zeros) replaces the genre-cluster table; `index` (a FAISS index over its rows
    1..n, ids = dense ids, e.g. from training/index.py) replaces the flat one, described by `index_ref`
    (IndexRef fields: type, params, build_params, reason). Both are for scale benchmarks; not with
    `cold_raw_ids` or `renumber`."""
    root.mkdir(parents=True, exist_ok=True)
    items = catalogue()
    n = n_items or len(items)
    for i in range(len(items), n):
        base = items[i % 50]
        items.append(
            {**base, "item_id": i + 1, "raw_id": str(1000 + i + 1), "title": f"{base['title']} #{i}"}
        )
    items = items[:n]
    emb = item_embeddings(n, dim, seed) if embeddings is None else embeddings
    dim = emb.shape[1]
    modelled = [it for it in items if it["raw_id"] not in set(cold_raw_ids)]
    if renumber:
        modelled.reverse()
    emb = np.concatenate([emb[:1], emb[[int(it["item_id"]) for it in modelled]]])  # rows follow their items
    new_id = {it["raw_id"]: i for i, it in enumerate(modelled, 1)}
    with (root / "items.jsonl").open("w") as f:
        for it in items:
            f.write(json.dumps({**it, "item_id": new_id.get(it["raw_id"])}) + "\n")
    n = len(modelled)
    np.save(root / "item_embeddings.npy", emb)
    if index is None:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index.add_with_ids(emb[1:], np.arange(1, n + 1, dtype=np.int64))
    faiss.write_index(index, str(root / "index.faiss"))
    encoder = MeanPoolEncoder(torch.from_numpy(emb)).eval()
    example = torch.randint(0, n + 1, (2, max_len), dtype=torch.int64)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(encoder, (example,), dynamic_shapes={"seqs": {0: batch}})
    torch.export.save(program, str(root / "encoder.pt2"))
    (root / "encoder.json").write_text(json.dumps({"kind": "mean-pool", "dim": dim, "max_len": max_len}))
    manifest = Manifest(
        bundle_id=bundle_id or f"test-meanpool-{seed:04d}",
        created_at="2025-01-01T00:00:00Z",
        dataset="test-movies",
        n_items=n,
        encoder=EncoderRef(kind="mean-pool", max_len=max_len, dim=dim),
        index=IndexRef(**{"type": "IDMap2,Flat", **(index_ref or {})}, n_items=n, dim=dim),
        metrics={"note": "synthetic fixture, no evaluation"},
        cold_items=cold_items,
    )
    if lora_adapter is not None:
        shutil.copytree(lora_adapter, root / "lora" / "explain", dirs_exist_ok=True)
        manifest.llm.lora_adapters["explain"] = "lora/explain"
    if soft_prompt is not None:
        np.save(root / "soft_prompt.npy", soft_prompt.astype(np.float32))
        manifest.llm.soft_prompt = "soft_prompt.npy"
    if rerank_adapter is not None:
        shutil.copytree(rerank_adapter, root / "llm" / "rerank", dirs_exist_ok=True)
        manifest.llm.lora_adapters[rerank.adapter if rerank and rerank.adapter else "rerank"] = "llm/rerank"
    manifest.llm.rerank = rerank
    return write_manifest(root, manifest)
