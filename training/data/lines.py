"""Shared plumbing of the readers: line iteration, bad-line accounting and the event-level checks.

Policy (one place, so every reader behaves alike): a *malformed* line (wrong field count, bad number,
bad JSON, undecodable bytes) is counted in `ReadIssues`, skipped, and summarised with one warning per
file; when the malformed fraction of a file exceeds `max_bad_fraction`, or the file is empty or
unreadable, a `DataError` names the file and the first bad line. Data-level facts that are not
corruption (events on items absent from the metadata, repeated (user, item) events, duplicate metadata
records) are counted and logged too but do not count toward the threshold: the Magazine 5-core file,
for one, has 2.7 % of its reviews on items without metadata and 3 % repeated pairs upstream.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path

from training.data.errors import DataError
from training.data.types import Interaction, ItemMeta, ReadIssues

logger = logging.getLogger(__name__)

DEFAULT_MAX_BAD_FRACTION = 0.01


class LineTally:
    """Counts the non-blank lines of one file and its malformed ones, and enforces the threshold."""

    def __init__(self, path: Path, issues: ReadIssues, max_bad_fraction: float) -> None:
        self.path = path
        self.issues = issues
        self.max_bad_fraction = max_bad_fraction
        self.n_lines = 0
        self.n_bad = 0
        self.first_bad: str | None = None

    def bad(self, kind: str, lineno: int, line: str) -> None:
        sample = f"{self.path.name}:{lineno}: {line.strip()}"
        self.issues.add(kind, sample)
        self.n_bad += 1
        if self.first_bad is None:
            self.first_bad = sample

    def finish(self) -> None:
        if self.n_lines == 0:
            raise DataError(f"{self.path}: file is empty")
        fraction = self.n_bad / self.n_lines
        if fraction > self.max_bad_fraction:
            raise DataError(
                f"{self.path}: {self.n_bad} of {self.n_lines} lines malformed ({fraction:.1%} > "
                f"max_bad_fraction {self.max_bad_fraction:.1%}); first bad line {self.first_bad!r}"
            )
        if self.n_bad:
            logger.warning(
                "%s: skipped %d malformed of %d lines (first: %r)",
                self.path,
                self.n_bad,
                self.n_lines,
                self.first_bad,
            )


def iter_lines(path: Path, tally: LineTally, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line without newline) for the non-blank lines of `path`.

    `.gz` files are decompressed. Lines that do not decode are counted as `bad_encoding` and skipped;
    a missing, unreadable or corrupt file raises `DataError` naming it.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                raw = raw.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                tally.n_lines += 1
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError:
                    tally.bad("bad_encoding", lineno, raw.decode(encoding, errors="replace"))
                    continue
                yield lineno, text
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({e})") from e


def detect_encoding(path: Path, candidates: tuple[str, ...] = ("utf-8", "latin-1")) -> str:
    """First encoding of `candidates` that decodes the whole file (latin-1 always does, so it goes last).

    ML-1M's movies.dat is latin-1 while ML-10M's is UTF-8; trying strict UTF-8 first tells them apart.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    for encoding in candidates:
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding != candidates[0]:
            logger.info("%s is not %s; reading it as %s", path, candidates[0], encoding)
        return encoding
    raise DataError(f"{path}: not decodable as any of {candidates}")


def parse_int(text: str) -> int:
    """int() that also accepts '5.0'-style integral floats but rejects '5.5' and junk (ValueError)."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise ValueError(f"not an integer: {text!r}") from None
        return int(value)


def drop_unknown_items(
    interactions: list[Interaction], items: dict[str, ItemMeta], issues: ReadIssues
) -> list[Interaction]:
    """Skip events whose item has no metadata record (counted as `missing_meta`)."""
    kept = []
    for x in interactions:
        if x.item in items:
            kept.append(x)
        else:
            issues.add("missing_meta", f"user {x.user} item {x.item}")
    if len(kept) < len(interactions):
        logger.warning("skipped %d events on items without metadata", len(interactions) - len(kept))
    return kept


def drop_duplicate_events(interactions: list[Interaction], issues: ReadIssues) -> list[Interaction]:
    """Keep one event per (user, item): the earliest, ties going to the first in file order.

    Kept events stay in file order, which `preprocess` uses as its tie-break.
    """
    best: dict[tuple[str, str], int] = {}
    for i, x in enumerate(interactions):
        key = (x.user, x.item)
        j = best.get(key)
        if j is None:
            best[key] = i
            continue
        issues.add("duplicate_event", f"user {x.user} item {x.item}")
        if x.timestamp < interactions[j].timestamp:
            best[key] = i
    n_dup = len(interactions) - len(best)
    if n_dup:
        logger.warning("skipped %d repeated (user, item) events, keeping the earliest of each", n_dup)
    keep = sorted(best.values())
    return [interactions[i] for i in keep]


def require_events(interactions: list[Interaction], path: Path) -> None:
    if not interactions:
        raise DataError(f"{path}: no valid events left after reading")
