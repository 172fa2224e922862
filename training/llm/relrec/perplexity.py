"""Does fine-tuning keep the LLM's language? ReLRec's claim (Na et al., Findings of EMNLP 2024) is that
reconstructing review-derived labels preserves the sentence abilities a plain next-item fine-tune erodes.
Two measurements, each taken on the base LLM, the plain fine-tune and ReLRec, with the same tokens:

* **held-out review perplexity**: exp of the token-weighted mean negative log-likelihood of review texts
  the labels never saw (the test-period reviews: the review of each user's test target; optionally the
  validation ones too), each a plain document after one start token, cut to `max_tokens`. Lower is better.
  Datasets without reviews (MovieLens-100K) have no such figure.
* **explanation log-likelihood**: a fixed set of recommendation-explanation prompts, each with a reference
  answer we wrote (`EXPLANATIONS`); the figure is the mean log-probability per reference token given the
  chat prompt (token-weighted over the set; the end-of-turn token is not scored). Higher is better. It asks
  whether the model still finds fluent explanations likely in the chat format the service uses.

Only differences between the three models mean something: the start token and the reference wording shift
all of them alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from training.data.types import SequenceDataset, Split
from training.llm.core.text_task import TextItem, TextScorer, perplexity
from training.llm.relrec.labels import review_text

EXPLANATIONS: tuple[tuple[str, str], ...] = (
    ("A reader subscribed to a cooking magazine and a gardening magazine. In one sentence, explain why they "
     "might enjoy a magazine about healthy home cooking.",
     "They already enjoy cooking at home, and this magazine adds simple, healthy recipes they can make "
     "with fresh vegetables from their garden."),
    ("A user watched three science fiction films set in space. In one sentence, explain why they might "
     "enjoy a new film about astronauts on a mission to Mars.",
     "It shares the space setting and sense of adventure of the films they watched, with a crew facing "
     "danger far from Earth."),
    ("A reader likes news magazines and business weeklies. In one sentence, explain why they might enjoy "
     "a magazine about the global economy.",
     "It covers markets, trade and world events in depth, much like the weekly news and business "
     "magazines they already read."),
    ("A user enjoyed several romantic comedies from the 1990s. In one sentence, explain why they might "
     "enjoy another light romantic comedy from that decade.",
     "It has the same warm humour and charming leads as the comedies they liked, and it comes from the "
     "same era."),
    ("A reader follows car reviews and motorsport news. In one sentence, explain why they might enjoy a "
     "magazine that tests new sports cars every month.",
     "Each issue reviews the latest cars in detail and follows racing, the two topics they read about "
     "most."),
    ("A user watched many animated family films. In one sentence, explain why they might enjoy a new "
     "animated adventure about talking animals.",
     "Like the films they watched, it is a colourful animated story for the whole family with funny "
     "characters and a big adventure."),
    ("A reader enjoys travel writing and photography. In one sentence, explain why they might enjoy a "
     "magazine about journeys to remote places.",
     "It combines vivid travel stories with beautiful photographs of faraway landscapes, which is what "
     "they look for when they read."),
    ("A user liked several crime thrillers with clever plots. In one sentence, explain why they might "
     "enjoy a detective film full of twists.",
     "It keeps the suspense and the surprising turns of the thrillers they liked, as a detective slowly "
     "uncovers the truth."),
)


def heldout_review_texts(ds: SequenceDataset, split: Split, which: Literal["test", "valid_test"] = "test",
                         max_docs: int | None = None, seed: int = 0) -> list[str]:
    """Texts of the reviews written at held-out events (never given to the label builder), in user order;
    a seeded sample of `max_docs` when given."""
    targets = (split.test_target,) if which == "test" else (split.valid_target, split.test_target)
    texts = []
    for u in range(split.n_users):
        for target in targets:
            review = ds.reviews.get((u, int(target[u])))
            text = review_text(review) if review is not None else ""
            if text:
                texts.append(text)
    if max_docs is not None and len(texts) > max_docs:
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=max_docs, replace=False))
        texts = [texts[i] for i in keep]
    return texts


def text_perplexity(model: Any, tokenizer: Any, texts: Sequence[str], max_tokens: int = 256,
                    batch_size: int = 8) -> dict[str, float]:
    """Perplexity of `model` on `texts` (plain documents), with the document and token counts."""
    scorer = TextScorer(tokenizer, max_target_tokens=max_tokens, end_of_turn=False)
    items = [TextItem("", t, "review", chat=False) for t in texts]
    sums, counts = scorer.nll(model, items, None, batch_size)
    return {"perplexity": perplexity(sums, counts), "docs": len(items), "tokens": int(counts.sum())}


def explanation_loglik(model: Any, tokenizer: Any, batch_size: int = 8,
                       pairs: Sequence[tuple[str, str]] = EXPLANATIONS) -> dict[str, Any]:
    """Mean log-probability per reference token of the fixed explanations (see the module docstring)."""
    scorer = TextScorer(tokenizer, max_target_tokens=256, end_of_turn=False)
    items = [TextItem(prompt, reference, "explain") for prompt, reference in pairs]
    sums, counts = scorer.nll(model, items, None, batch_size)
    return {"mean_token_loglik": float(-sums.sum() / max(1, counts.sum())),
            "per_prompt": [float(-s / max(1, c)) for s, c in zip(sums, counts, strict=True)]}


def language_report(model: Any, tokenizer: Any, texts: Sequence[str], max_tokens: int = 256,
                    batch_size: int = 8) -> dict[str, Any]:
    """Both language figures of one model; `review` is None without held-out review texts."""
    review = text_perplexity(model, tokenizer, texts, max_tokens, batch_size) if texts else None
    return {"review": review, "explain": explanation_loglik(model, tokenizer, batch_size)}
