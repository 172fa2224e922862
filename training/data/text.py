"""Minimal clean-up of scraped text (Amazon 2018 metadata and reviews).

The 2018 metadata was scraped from product pages, so fields carry HTML entities (`&amp;`), tags
(`<br>`, `<hr noshade ...>`) and, for Magazine Subscriptions, an unclosed `<span ...` as the whole
title. We only unescape, drop tags and collapse whitespace: anything smarter would be guessing.
"""

from __future__ import annotations

import html
import re

_TAG = re.compile(r"<[^<>]*>")
_UNCLOSED_TAG = re.compile(r"<[a-zA-Z/][^<>]*$")  # e.g. '<span class="a-size-medium a-color-secondary"'
_SPACE = re.compile(r"\s+")


def clean_text(value: object) -> str:
    """Return `value` as plain one-line text ("" for None / non-strings)."""
    if not isinstance(value, str):
        return ""
    text = html.unescape(value)
    text = _TAG.sub(" ", text)
    text = _UNCLOSED_TAG.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def clean_list(value: object) -> list[str]:
    """Clean each string of a list field (description, category), dropping parts left empty."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    cleaned = (clean_text(v) for v in value)
    return [v for v in cleaned if v]


def short_title(text: str, max_chars: int = 80) -> str:
    """First sentence of `text`, cut at a word boundary to at most `max_chars` characters."""
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].strip()
    if len(sentence) <= max_chars:
        return sentence
    cut = sentence[:max_chars].rsplit(" ", 1)[0].rstrip(",;:-")
    return cut + "…"
