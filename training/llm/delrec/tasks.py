"""DELRec's ranking questions (arXiv 2406.11156 §3; templates reworded from the official code's
prompt_construction/RPS.txt and TA.txt). Every question is a `RankItem` for the shared ranker.

- Recommendation pattern simulating (RPS, stage 1): candidates = the teacher's top-k for a training prefix
  + random items, target = the teacher's top-1; the teacher's next predictions appear as hints.
- Temporal analysis (TA, stage 1): one worked example (an earlier item and the one after it), then "which
  candidate is the hidden most recent item, given the item that came after it?"; target + random items.
- Recommendation (stage 2 and serving): the next training item among target + random non-sequence items.
Every question is drawn from training positions only (`split.train`): no validation or test target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from recbundle.rerank import item_title
from training.data.types import Split
from training.eval.protocols import build_candidates
from training.llm.core.ranker import RankItem

TeacherTopK = Callable[[list[np.ndarray], int], np.ndarray]  # histories, k -> (B, k) ids, history masked

RPS_INSTRUCTION = (
    "A user interacted with these items, oldest first:\n{history}\n\n"
    "Candidates:\n{candidates}\n\n"
    "A sequential recommender ranks these next for the user, among others: {hints}.\n"
    "Which candidate does the sequential recommender rank first? Answer with its letter only."
)
TA_INSTRUCTION = (
    "A user interacted with these items, oldest first:\n{history}\n\n"
    "Example: after \"{example_item}\", the user chose \"{example_next}\".\n"
    "The user's next item is hidden. After it, the user chose \"{next_item}\".\n\n"
    "Candidates:\n{candidates}\n\n"
    "Which candidate is the hidden item? Answer with its letter only."
)


def _negatives(rng: np.random.Generator, n_items: int, exclude: set[int], k: int) -> list[int]:
    out: list[int] = []
    while len(out) < k:
        for i in rng.integers(1, n_items + 1, size=2 * k).tolist():
            if i not in exclude and i not in out:
                out.append(int(i))
                if len(out) == k:
                    break
    return out


def _positions(seq: np.ndarray, lo: int, n: int, rng: np.random.Generator) -> list[int]:
    """Up to n distinct cut points t in [lo, len(seq)) (history = seq[:t], target = seq[t]), newest first
    preferred: the newest positions look most like the validation and test questions."""
    cands = list(range(max(lo, 1), len(seq)))
    if len(cands) <= n:
        return cands
    newest = cands[-max(1, n // 2) :]
    rest = rng.choice(cands[: -len(newest)], size=n - len(newest), replace=False).tolist()
    return sorted(rest) + newest


def rps_items(split: Split, users: np.ndarray, per_user: int, n_cand: int, teacher_k: int, hints: int,
              teacher: TeacherTopK, seed: int) -> list[RankItem]:
    rng = np.random.default_rng([seed, 1])
    prefixes: list[np.ndarray] = []
    for u in users:
        seq = split.train[u]
        prefixes.extend(seq[:t] for t in _positions(seq, 3, per_user, rng))
    if not prefixes:
        return []
    tops = teacher(prefixes, teacher_k + hints)
    out = []
    for hist, top in zip(prefixes, tops, strict=True):
        top_k = [int(i) for i in top[:teacher_k]]
        negs = _negatives(rng, split.n_items, set(hist.tolist()) | set(top.tolist()), n_cand - teacher_k)
        hint_ids = [int(i) for i in top[1 : 1 + hints]]
        hint_text = "; ".join(f"#{i}" for i in hint_ids)  # `#<id>`: replaced by titles in `titled`
        out.append(RankItem(hist.tolist(), top_k + negs, 0, "rps", RPS_INSTRUCTION, {"hints": hint_text}))
    return out


def ta_items(split: Split, users: np.ndarray, per_user: int, n_cand: int, seed: int) -> list[RankItem]:
    rng = np.random.default_rng([seed, 2])
    out = []
    for u in users:
        seq = split.train[u]
        known = set(seq.tolist())
        # cut points t < len - 1: the item after the hidden one must be a training item too
        for t in _positions(seq[:-1], 4, per_user, rng):
            target, nxt = int(seq[t]), int(seq[t + 1])
            j = int(rng.integers(0, t - 1))  # worked example: an earlier consecutive pair
            fields = {"example_item": f"#{seq[j]}", "example_next": f"#{seq[j + 1]}", "next_item": f"#{nxt}"}
            cands = [target, *_negatives(rng, split.n_items, known, n_cand - 1)]
            out.append(RankItem(seq[:t].tolist(), cands, 0, "ta", TA_INSTRUCTION, fields))
    return out


def rec_items(split: Split, users: np.ndarray, per_user: int, n_cand: int, seed: int) -> list[RankItem]:
    """Stage 2: the next training item among target + (n_cand - 1) random items the user never had."""
    rng = np.random.default_rng([seed, 3])
    out = []
    for u in users:
        seq = split.train[u]
        known = set(seq.tolist()) | {int(split.valid_target[u]), int(split.test_target[u])}
        for t in _positions(seq, 3, per_user, rng):
            cands = [int(seq[t]), *_negatives(rng, split.n_items, known, n_cand - 1)]
            out.append(RankItem(seq[:t].tolist(), cands, 0, "rec"))
    return out


def titled(items: Sequence[RankItem], titles: Sequence[str | None], max_chars: int) -> list[RankItem]:
    """Fill the `#<id>` placeholders of the task fields with catalogue titles (as the prompt shows them)."""
    def fill(v: str) -> str:
        parts = [p.strip() for p in v.split(";")]
        return "; ".join(item_title(titles[int(p[1:])], int(p[1:]), max_chars) if p.startswith("#") else p
                         for p in parts)

    for it in items:
        it.fields = {k: fill(v) for k, v in it.fields.items()}
    return list(items)


def protocol_items(split: Split, stage: str, users: np.ndarray, protocol_seed: int) -> list[RankItem]:
    """The cand20 protocol's own candidates (the ones SASRec is scored on), in a fixed shuffled order per
    user (column 0 is the target in the protocol's table; showing it first would reward position bias)."""
    cands = build_candidates(split, "cand20", stage, protocol_seed, users)  # type: ignore[arg-type]
    assert cands is not None
    hists = split.valid_history if stage == "valid" else split.test_history
    out = []
    for row, u in enumerate(users):
        rng = np.random.default_rng([protocol_seed, 7, int(u)])
        order = rng.permutation(cands.shape[1])
        shown = [int(cands[row, i]) for i in order]
        out.append(RankItem(hists[u].tolist(), shown, int(np.flatnonzero(order == 0)[0]), "eval"))
    return out
