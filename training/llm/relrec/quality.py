"""How well a pseudo-label describes its item or user: is it supported by a *held-out* review?

A label is built from training-period reviews only (`labels.training_reviews`), so the reviews of the
validation and test events are unseen evidence about the same item / user. On a seeded sample:

* a phrase is **lexically supported** when every content word of the phrase, Snowball-stemmed (Porter 2001,
  so "recipes" meets "recipe"), occurs in the entity's held-out reviews;
* a phrase is **semantically supported** when its all-MiniLM-L6-v2 cosine to some sentence of the review is
  at least `threshold` (sentence, not review: a long review's mean embedding drowns one aspect). 0.5
  separates paraphrases from mere shared topic; measured here: "fast delivery" vs "arrived quickly" 0.65,
  "great recipes" vs "the recipes are healthy" 0.67, but "science magazine" vs "I love the car reviews in
  this magazine" 0.38 and "great recipes" vs "the pages are glossy" 0.09;
* a **label** is supported when at least one of its phrases is (`*_label`); `*_phrase` is the mean share of
  supported phrases per label, the stricter figure.

Generic labels ("great; magazine") would be "supported" everywhere, so every figure comes with a
`*_control`: the same label against the held-out reviews of *another* sampled entity (a seeded derangement).
What a label says about its own item is the gap between the two, not the first figure alone.

Metadata labels (ML-100K) have no reviews to check: a user label (top genres, decade) is checked lexically
against the metadata labels of the user's held-out items (did the user's validation/test movie carry one of
those genres?); item labels restate the catalogue and are not scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from training.data.types import SequenceDataset, Split
from training.llm.relrec.labels import (
    LabelConfig,
    MiniLM,
    PseudoLabels,
    metadata_item_labels,
    phrases,
    review_documents,
    stop_words,
    tokens,
    training_reviews,
)

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class QualityConfig:
    sample: int = 200  # entities scored per kind (all of them on the small Amazon 5-core categories)
    seed: int = 0
    threshold: float = 0.5  # cosine for semantic support; see the module docstring


def heldout_reviews(ds: SequenceDataset, split: Split) -> dict[tuple[int, int], tuple[str, str]]:
    """Reviews of the validation and test events; never given to the label builder."""
    out: dict[tuple[int, int], tuple[str, str]] = {}
    for u in range(split.n_users):
        for i in (int(split.valid_target[u]), int(split.test_target[u])):
            if (u, i) in ds.reviews:
                out[(u, i)] = ds.reviews[(u, i)]
    return out


class _Stems:
    """Memoised Snowball stems of the content words of a text."""

    def __init__(self) -> None:
        import snowballstemmer

        self._stemmer = snowballstemmer.stemmer("english")
        self._stop = stop_words()
        self._cache: dict[str, frozenset[str]] = {}

    def __call__(self, text: str) -> frozenset[str]:
        if text not in self._cache:
            words = [w for w in tokens(text) if w not in self._stop]
            self._cache[text] = frozenset(self._stemmer.stemWords(words))
        return self._cache[text]


def _sentences(texts: list[str]) -> list[str]:
    return [s for t in texts for s in _SENTENCE.split(t) if s.strip()]


def _support(
    labels: dict[int, str],
    evidence: dict[int, list[str]],
    pairs: list[tuple[int, int]],
    encoder: MiniLM | None,
    threshold: float,
) -> dict[str, float]:
    """Support rates of label[a] by evidence[b] over the (a, b) pairs."""
    stems = _Stems()
    hits: dict[str, list[float]] = {"lexical_label": [], "lexical_phrase": []}
    for a, b in pairs:
        ev = set().union(*(stems(t) for t in evidence[b]))
        ok = [bool(stems(p)) and stems(p) <= ev for p in phrases(labels[a])]
        hits["lexical_label"].append(float(any(ok)))
        hits["lexical_phrase"].append(float(np.mean(ok)))
    if encoder is not None:
        hits |= _semantic(labels, evidence, pairs, encoder, threshold)
    return {k: round(float(np.mean(v)), 4) for k, v in hits.items()}


def _semantic(
    labels: dict[int, str],
    evidence: dict[int, list[str]],
    pairs: list[tuple[int, int]],
    encoder: MiniLM,
    threshold: float,
) -> dict[str, list[float]]:
    # one call fills the encoder's memo in large batches; the per-pair calls below are look-ups
    label_texts = {p for a, _ in pairs for p in phrases(labels[a])}
    encoder.encode(sorted(label_texts | {s for _, b in pairs for s in _sentences(evidence[b])}))
    hits: dict[str, list[float]] = {"semantic_label": [], "semantic_phrase": []}
    for a, b in pairs:
        sents = encoder.encode(_sentences(evidence[b]))  # (S, 384)
        best = encoder.encode(phrases(labels[a])) @ sents.T  # (P, S) cosines
        # rounded so that float noise between thread counts cannot flip a phrase at the threshold
        ok = np.round(best.max(axis=1), 4) >= threshold
        hits["semantic_label"].append(float(ok.any()))
        hits["semantic_phrase"].append(float(ok.mean()))
    return hits


def entity_quality(
    labels: dict[int, str],
    evidence: dict[int, list[str]],
    cfg: QualityConfig,
    encoder: MiniLM | None = None,
    seen: dict[int, list[str]] | None = None,
) -> dict[str, Any]:
    """Support rates on a seeded sample of entities that have both a label and held-out evidence.

    A held-out text that repeats one of the entity's training texts verbatim (Amazon users paste one review
    under several products) is no independent evidence: it is dropped, and `copied` says how often.
    """
    seen = seen or {}
    fresh = {e: [t for t in texts if t not in set(seen.get(e, ()))] for e, texts in evidence.items()}
    with_evidence = [e for e in labels if evidence.get(e)]
    copied = (
        float(np.mean([len(fresh[e]) < len(evidence[e]) for e in with_evidence])) if with_evidence else 0.0
    )
    evidence = fresh
    ids = sorted(e for e in labels if evidence.get(e))
    if len(ids) < 2:
        return {"n": len(ids)}
    rng = np.random.default_rng(cfg.seed)
    sample = sorted(int(e) for e in rng.choice(ids, size=min(cfg.sample, len(ids)), replace=False))
    order = rng.permutation(len(sample))
    # a derangement: each entity meets the evidence of the next one in a seeded cycle
    other = {sample[order[k]]: sample[order[(k + 1) % len(sample)]] for k in range(len(sample))}
    own = _support(labels, evidence, [(e, e) for e in sample], encoder, cfg.threshold)
    control = _support(labels, evidence, [(e, other[e]) for e in sample], encoder, cfg.threshold)
    return {
        "n": len(sample),
        "copied": round(copied, 4),
        **own,
        **{f"{k}_control": v for k, v in control.items()},
    }


def label_quality(
    ds: SequenceDataset,
    split: Split,
    labels: PseudoLabels,
    cfg: QualityConfig | None = None,
    encoder: MiniLM | None = None,
) -> dict[str, Any]:
    """Held-out support of item and user labels (see the module docstring); semantic figures need `encoder`."""
    cfg = cfg or QualityConfig()
    if labels.source == "metadata":
        item_meta = metadata_item_labels(ds, LabelConfig(**labels.config))
        evidence = {
            u: [
                item_meta[i]
                for i in (int(split.valid_target[u]), int(split.test_target[u]))
                if i in item_meta
            ]
            for u in range(split.n_users)
        }
        return {
            "rule": "metadata: user label vs. metadata of the user's held-out items (lexical)",
            "user": entity_quality(labels.user, evidence, cfg),
            "item": {"n": 0, "note": "metadata labels restate the catalogue; nothing held out to check"},
        }
    held, train = heldout_reviews(ds, split), training_reviews(ds, split)
    out: dict[str, Any] = {"rule": f"reviews: lexical (stems) and MiniLM cosine >= {cfg.threshold}"}
    kinds: tuple[tuple[Literal["item", "user"], dict[int, str]], ...] = (
        ("item", labels.item),
        ("user", labels.user),
    )
    for by, labelled in kinds:
        out[by] = entity_quality(
            labelled, review_documents(ds, held, by), cfg, encoder, seen=review_documents(ds, train, by)
        )
    return out


def main(argv: list[str] | None = None) -> None:
    """Labels and their quality per extractor on a preset's data, e.g. (the ReLRec report's figures):

    .venv/bin/python -m training.llm.relrec.quality --preset amazon-magazine --extractors frequent yake keybert
    """
    import argparse
    import logging
    import time
    from pathlib import Path

    from training.config import load_config
    from training.llm.relrec.labels import build_labels, load_encoder
    from training.pipeline import prepare_stage

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--extractors", nargs="+", default=["yake"], choices=["yake", "keybert", "frequent"])
    parser.add_argument("--out", type=Path, help="also write <out>/<preset>-<extractor>.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("relrec.quality")
    ds, split = prepare_stage(load_config(args.preset))
    encoder = load_encoder() if ds.reviews else None  # metadata labels need no encoder
    for extractor in args.extractors if ds.reviews else args.extractors[:1]:
        start = time.perf_counter()
        labels = build_labels(ds, split, LabelConfig(extractor=extractor), encoder)
        labels.stats["wall_s"] = round(time.perf_counter() - start, 1)
        labels.quality = label_quality(ds, split, labels, encoder=encoder)
        name = extractor if labels.source == "reviews" else "metadata"
        log.info("%s %s: labels in %s s", args.preset, name, labels.stats["wall_s"])
        for kind in ("item", "user"):
            log.info("  %s quality %s", kind, labels.quality[kind])
        for i in sorted(labels.item)[:5]:
            log.info("  item %d %r -> %s", i, ds.items[i - 1].title[:40], labels.item[i])
        for u in sorted(labels.user)[:3]:
            log.info("  user %d -> %s", u, labels.user[u])
        if args.out:
            labels.save(args.out / f"{args.preset}-{extractor}.json")


if __name__ == "__main__":
    main()
