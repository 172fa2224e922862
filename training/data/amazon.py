"""Amazon Review Data (2018) reader: a per-category 5-core review file + its metadata file.

Format: Ni, Li & McAuley (EMNLP 2019), https://nijianmo.github.io/amazon/ — gzip JSON lines. Some
categories' metadata lines are Python dict literals (single quotes) rather than JSON, which is why
the upstream loading snippet uses `eval`; we try `json.loads` first and fall back to the safe
`ast.literal_eval`. Metadata files repeat records: the first record of each asin wins.

Display titles: the Magazine Subscriptions metadata has a broken `title` for 148 of its 151 reviewed
items (the HTML fragment `<span class="a-size-medium a-color-secondary"`, see the dataset README).
When a title is empty after clean-up, the display title falls back to the first sentence of the
description, then the brand, then the leaf category, then the asin; `extra["title_source"]` records
which, and `extra["raw_title"]` keeps the original text.
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Any

from training.data.lines import (
    DEFAULT_MAX_BAD_FRACTION,
    LineTally,
    drop_duplicate_events,
    drop_unknown_items,
    iter_lines,
    parse_int,
    require_events,
)
from training.data.text import clean_list, clean_text, short_title
from training.data.types import Interaction, ItemMeta, RawDataset, ReadIssues

logger = logging.getLogger(__name__)


def _parse_record(line: str) -> dict[str, Any] | None:
    """One JSON object (or Python dict literal) per line; None when it is neither."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return record if isinstance(record, dict) else None


def _display_title(
    asin: str, title: str, description: str, brand: str, categories: list[str]
) -> tuple[str, str]:
    """(display title, source field) following the fallback order in the module docstring."""
    for source, text in (
        ("title", title),
        ("description", short_title(description) if description else ""),
        ("brand", brand),
        ("category", categories[-1] if categories else ""),
    ):
        if text:
            return text, source
    return asin, "asin"


def _item_meta(record: dict[str, Any]) -> ItemMeta:
    asin = str(record["asin"]).strip()
    raw_title = record.get("title") if isinstance(record.get("title"), str) else ""
    description = " ".join(clean_list(record.get("description")))
    categories = clean_list(record.get("category"))
    brand = clean_text(record.get("brand"))
    title, source = _display_title(asin, clean_text(raw_title), description, brand, categories)
    extra = {"title_source": source}
    if source != "title" and raw_title:
        extra["raw_title"] = raw_title
    main_cat = clean_text(record.get("main_cat"))
    if main_cat:
        extra["main_cat"] = main_cat
    return ItemMeta(
        raw_id=asin, title=title, description=description, categories=categories, brand=brand, extra=extra
    )


def _read_meta(path: Path, issues: ReadIssues, max_bad_fraction: float) -> dict[str, ItemMeta]:
    items: dict[str, ItemMeta] = {}
    tally = LineTally(path, issues, max_bad_fraction)
    for lineno, line in iter_lines(path, tally):
        record = _parse_record(line)
        if record is None:
            tally.bad("bad_json", lineno, line)
            continue
        if not isinstance(record.get("asin"), str) or not record["asin"].strip():
            tally.bad("missing_field", lineno, line)
            continue
        meta = _item_meta(record)
        if meta.raw_id in items:
            issues.add("duplicate_meta", meta.raw_id)
            continue
        items[meta.raw_id] = meta
    tally.finish()
    return items


def _interaction(record: dict[str, Any]) -> Interaction:
    """Raises KeyError / ValueError / TypeError on a missing or ill-typed required field."""
    user, item = record["reviewerID"], record["asin"]
    if not (isinstance(user, str) and isinstance(item, str) and user and item):
        raise ValueError("reviewerID / asin must be non-empty strings")
    review, summary = record.get("reviewText"), record.get("summary")
    return Interaction(
        user=user,
        item=item,
        timestamp=parse_int(str(record["unixReviewTime"])),
        rating=float(record["overall"]),
        review=clean_text(review) if isinstance(review, str) else None,
        summary=clean_text(summary) if isinstance(summary, str) else None,
    )


def read_amazon2018(
    reviews_path: Path,
    meta_path: Path,
    *,
    name: str | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
) -> RawDataset:
    """Read `<Category>_5.json.gz` reviews and `meta_<Category>.json.gz` item metadata.

    Keeps rating, review text and summary per event, and title/description/category/brand per item.
    Reviews of items absent from the metadata are skipped (counted as `missing_meta`).
    """
    name = name or reviews_path.name.split("_5.json")[0]
    issues = ReadIssues()
    items = _read_meta(meta_path, issues, max_bad_fraction)

    events: list[Interaction] = []
    tally = LineTally(reviews_path, issues, max_bad_fraction)
    for lineno, line in iter_lines(reviews_path, tally):
        record = _parse_record(line)
        if record is None:
            tally.bad("bad_json", lineno, line)
            continue
        try:
            events.append(_interaction(record))
        except KeyError:
            tally.bad("missing_field", lineno, line)
        except (ValueError, TypeError):
            tally.bad("bad_value", lineno, line)
    tally.finish()

    events = drop_unknown_items(events, items, issues)
    events = drop_duplicate_events(events, issues)
    require_events(events, reviews_path)
    n_fallback = sum(items[i].extra.get("title_source") != "title" for i in {x.item for x in events})
    if n_fallback:
        logger.info(
            "%s: %d reviewed items have no usable title; display title from fallback fields", name, n_fallback
        )
    logger.info(
        "%s: %d events, %d items in the catalogue, issues %s", name, len(events), len(items), issues.counts
    )
    return RawDataset(name=name, interactions=events, items=items, issues=issues)
