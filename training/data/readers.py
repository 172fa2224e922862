"""MovieLens readers: ML-100K (`u.data`/`u.item`), ML-1M/10M (`*.dat`) and ml-latest/20M/25M (`*.csv`).

Formats follow the GroupLens READMEs shipped with each release (Harper & Konstan 2015). Raw ids stay
the strings the files spell, after checking they are integers. Every reader returns events in file
order (the tie-break `preprocess` relies on); bad input is handled as `training.data.lines` describes.
The Amazon reader is in `amazon.py`, the name -> reader registry in `registry.py`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from training.data.errors import DataError
from training.data.lines import (
    DEFAULT_MAX_BAD_FRACTION,
    LineTally,
    detect_encoding,
    drop_duplicate_events,
    drop_unknown_items,
    iter_lines,
    parse_int,
    require_events,
)
from training.data.types import Interaction, ItemMeta, RawDataset, ReadIssues

logger = logging.getLogger(__name__)

# u.genre order of the 100K release; used when u.genre is absent or unreadable.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

Fields = list[str]


def _read_ratings(
    lines: Iterable[tuple[int, str]], split: Callable[[str], Fields], tally: LineTally
) -> list[Interaction]:
    """Parse `user item rating timestamp` rows; malformed rows are counted and skipped."""
    out = []
    for lineno, line in lines:
        fields = split(line)
        if len(fields) != 4:
            tally.bad("bad_field_count", lineno, line)
            continue
        user, item, rating, ts = (f.strip() for f in fields)
        try:
            parse_int(user), parse_int(item)
            out.append(Interaction(user=user, item=item, timestamp=parse_int(ts), rating=float(rating)))
        except ValueError:
            tally.bad("bad_value", lineno, line)
    return out


def _finish(
    name: str, ratings_path: Path, events: list[Interaction], items: dict[str, ItemMeta], issues: ReadIssues
) -> RawDataset:
    events = drop_unknown_items(events, items, issues)
    events = drop_duplicate_events(events, issues)
    require_events(events, ratings_path)
    logger.info(
        "%s: %d events, %d items in the catalogue, issues %s", name, len(events), len(items), issues.counts
    )
    return RawDataset(name=name, interactions=events, items=items, issues=issues)


def _add_item(items: dict[str, ItemMeta], meta: ItemMeta, tally: LineTally, lineno: int, line: str) -> None:
    if meta.raw_id in items:  # keep the first record; a repeat is a data fact, not a malformed line
        tally.issues.add("duplicate_meta", f"{tally.path.name}:{lineno}: {line}")
        return
    items[meta.raw_id] = meta


def _read_genre_names(path: Path) -> tuple[str, ...]:
    try:
        rows = [ln.split("|") for ln in path.read_text(encoding="latin-1").splitlines() if ln.strip()]
        names = {int(idx): genre for genre, idx in rows}
        return tuple(names[i] for i in range(len(names)))
    except (OSError, ValueError, KeyError) as e:
        logger.warning("%s unreadable (%s); using the standard 19 ML-100K genre names", path, e)
        return ML100K_GENRES


def read_movielens_100k(
    folder: Path, *, name: str = "ml-100k", max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
) -> RawDataset:
    """Read ML-100K: `u.data` (tab-separated user item rating ts) + `u.item` (latin-1, '|', 24 fields).

    Genres come from the 19 binary flags, named by `u.genre`; release date and IMDb URL go to `extra`.
    """
    issues = ReadIssues()
    genres = _read_genre_names(folder / "u.genre")
    items: dict[str, ItemMeta] = {}
    item_path = folder / "u.item"
    tally = LineTally(item_path, issues, max_bad_fraction)
    for lineno, line in iter_lines(item_path, tally, encoding="latin-1"):  # README: u.item is ISO-8859-1
        fields = line.split("|")
        if len(fields) != 5 + len(genres):
            tally.bad("bad_field_count", lineno, line)
            continue
        item_id, title, release, _video, url = (f.strip() for f in fields[:5])
        flags = fields[5:]
        try:
            parse_int(item_id)
            if any(f not in ("0", "1") for f in flags):
                raise ValueError("genre flags must be 0/1")
        except ValueError:
            tally.bad("bad_value", lineno, line)
            continue
        cats = [g for g, f in zip(genres, flags, strict=True) if f == "1"]
        extra = {k: v for k, v in (("release_date", release), ("imdb_url", url)) if v}
        _add_item(
            items, ItemMeta(raw_id=item_id, title=title, categories=cats, extra=extra), tally, lineno, line
        )
    tally.finish()

    data_path = folder / "u.data"
    tally = LineTally(data_path, issues, max_bad_fraction)
    events = _read_ratings(iter_lines(data_path, tally, encoding="ascii"), lambda s: s.split("\t"), tally)
    tally.finish()
    return _finish(name, data_path, events, items, issues)


def _split_genres(text: str) -> list[str]:
    return [g for g in text.strip().split("|") if g and g != "(no genres listed)"]


def read_movielens_dat(
    folder: Path, *, name: str = "ml-1m", max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
) -> RawDataset:
    """Read ML-1M / ML-10M: `ratings.dat` (`u::i::r::ts`) + `movies.dat` (`id::title::A|B`).

    movies.dat is latin-1 in ML-1M and UTF-8 in ML-10M: strict UTF-8 first, latin-1 as the fallback.
    """
    issues = ReadIssues()
    items: dict[str, ItemMeta] = {}
    movies_path = folder / "movies.dat"
    tally = LineTally(movies_path, issues, max_bad_fraction)
    for lineno, line in iter_lines(movies_path, tally, encoding=detect_encoding(movies_path)):
        fields = line.split("::")
        if len(fields) != 3:
            tally.bad("bad_field_count", lineno, line)
            continue
        try:
            parse_int(fields[0])
        except ValueError:
            tally.bad("bad_value", lineno, line)
            continue
        meta = ItemMeta(
            raw_id=fields[0].strip(), title=fields[1].strip(), categories=_split_genres(fields[2])
        )
        _add_item(items, meta, tally, lineno, line)
    tally.finish()

    ratings_path = folder / "ratings.dat"
    tally = LineTally(ratings_path, issues, max_bad_fraction)
    events = _read_ratings(iter_lines(ratings_path, tally), lambda s: s.split("::"), tally)
    tally.finish()
    return _finish(name, ratings_path, events, items, issues)


def _csv_rows(path: Path, tally: LineTally, columns: tuple[str, ...]) -> Iterable[tuple[int, Fields]]:
    """Yield (line number, fields in `columns` order) of a headed CSV file, one line per record.

    MovieLens CSVs quote titles with commas but never embed newlines, so parsing line by line keeps the
    per-line accounting exact.
    """
    lines = iter_lines(path, tally)
    header = next(iter(lines), None)
    if header is None:
        tally.finish()  # raises: empty file
        return
    tally.n_lines -= 1  # the header is not a record
    names = next(csv.reader([header[1]]))
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"{path}:1: header {names} lacks columns {missing}")
    index = [names.index(c) for c in columns]
    for lineno, line in lines:
        try:
            row = next(csv.reader([line], strict=True))
        except csv.Error:
            tally.bad("bad_csv", lineno, line)
            continue
        if len(row) != len(names):
            tally.bad("bad_field_count", lineno, line)
            continue
        yield lineno, [row[i] for i in index]


def read_movielens_csv(
    folder: Path, *, name: str = "ml-latest-small", max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
) -> RawDataset:
    """Read ml-latest(-small) / ML-20M / ML-25M: `ratings.csv` + `movies.csv` (UTF-8, headed, quoted)."""
    issues = ReadIssues()
    items: dict[str, ItemMeta] = {}
    movies_path = folder / "movies.csv"
    tally = LineTally(movies_path, issues, max_bad_fraction)
    for lineno, (item_id, title, genres) in _csv_rows(movies_path, tally, ("movieId", "title", "genres")):
        try:
            parse_int(item_id)
        except ValueError:
            tally.bad("bad_value", lineno, item_id)
            continue
        meta = ItemMeta(raw_id=item_id.strip(), title=title.strip(), categories=_split_genres(genres))
        _add_item(items, meta, tally, lineno, title)
    tally.finish()

    ratings_path = folder / "ratings.csv"
    tally = LineTally(ratings_path, issues, max_bad_fraction)
    rows = (
        (lineno, ",".join(r))
        for lineno, r in _csv_rows(ratings_path, tally, ("userId", "movieId", "rating", "timestamp"))
    )
    events = _read_ratings(rows, lambda s: s.split(","), tally)
    tally.finish()
    return _finish(name, ratings_path, events, items, issues)
