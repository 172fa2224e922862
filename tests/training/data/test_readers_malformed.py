"""Readers on small hand-written broken files: bad lines are counted and skipped, too many of them raise."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.training.data.conftest import write_gz_lines
from training.data import (
    DataError,
    read_amazon2018,
    read_movielens_100k,
    read_movielens_csv,
    read_movielens_dat,
)
from training.data.readers import ML100K_GENRES

FLAGS = "|".join(["0"] * 19)


def _ml100k(folder: Path, data_lines: list[str], extra_items: bytes = b"") -> Path:
    folder.mkdir(exist_ok=True)
    items = [f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{FLAGS}" for i in (1, 2, 3)]
    (folder / "u.item").write_bytes("\n".join(items).encode("latin-1") + b"\n" + extra_items)
    (folder / "u.data").write_bytes("\n".join(data_lines).encode("latin-1") + b"\n")
    return folder


GOOD = [f"{u}\t{i}\t4\t{100 + u * 10 + i}" for u in (1, 2) for i in (1, 2, 3)]


def test_ml100k_latin1_title_and_genres_without_u_genre(tmp_path: Path) -> None:
    flags = "|".join("1" if g in ("Comedy", "Drama") else "0" for g in ML100K_GENRES)
    extra = f"4|Misérables, Les (1995)|01-Jan-1995||http://x|{flags}\n".encode("latin-1")
    raw = read_movielens_100k(_ml100k(tmp_path / "ml", [*GOOD, "1\t4\t5\t999"], extra))
    assert raw.items["4"].title == "Misérables, Les (1995)"
    assert raw.items["4"].categories == ["Comedy", "Drama"]  # standard names: no u.genre in the folder
    assert len(raw.interactions) == 7 and raw.issues.total == 0


def test_ml100k_bad_lines_counted_and_skipped(tmp_path: Path) -> None:
    bad = ["1\t2\t3", "x\t1\t4\t5", "1\t1\t4\t12.5", "2\t1\t4\tnotatime", "1\t9\t4\t1"]
    lines = [*GOOD, *bad, "1\t1\t5\t50"]  # last: repeat of (1, 1), earlier in time than the first
    raw = read_movielens_100k(_ml100k(tmp_path / "ml", lines), max_bad_fraction=0.5)
    assert raw.issues.counts == {
        "bad_field_count": 1,
        "bad_value": 3,
        "missing_meta": 1,
        "duplicate_event": 1,
    }
    assert raw.issues.samples["bad_field_count"] == ["u.data:7: 1\t2\t3"]
    kept = {(x.user, x.item): x.timestamp for x in raw.interactions}
    assert len(kept) == 6 and kept[("1", "1")] == 50  # the earliest of the repeated pair


def test_too_many_bad_lines_raise_naming_file_and_line(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "ml", [*GOOD, "1\t2\t3"])
    with pytest.raises(DataError, match=r"u\.data.*1 of 7 lines.*u\.data:7"):
        read_movielens_100k(folder)


def test_wrong_encoding_is_a_bad_line(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "ml", GOOD)
    with (folder / "u.data").open("ab") as f:
        f.write(b"1\t3\t\xff\xfe\t5\n")
    raw = read_movielens_100k(folder, max_bad_fraction=0.5)
    assert raw.issues.counts == {"bad_encoding": 1}


def test_empty_and_missing_files_raise(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "ml", GOOD)
    (folder / "u.data").write_text("\n")
    with pytest.raises(DataError, match="u.data: file is empty"):
        read_movielens_100k(folder)
    (folder / "u.data").unlink()
    with pytest.raises(DataError, match="u.data: cannot read"):
        read_movielens_100k(folder)


def test_dat_reader_latin1_fallback_and_utf8(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n1::20::3::978300761\n2::10::4.5::978300762\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::Amélie (2001)::Comedy|Romance\n20::X (1999)::Drama\n".encode("latin-1")
    )
    raw = read_movielens_dat(tmp_path)
    assert raw.items["10"].title == "Amélie (2001)"
    assert raw.items["10"].categories == ["Comedy", "Romance"]
    assert [x.rating for x in raw.interactions] == [5.0, 3.0, 4.5]
    (tmp_path / "movies.dat").write_text("10::Amélie (2001)::Comedy\n20::X (1999)::(no genres listed)\n")
    raw = read_movielens_dat(tmp_path)
    assert raw.items["10"].title == "Amélie (2001)" and raw.items["20"].categories == []


def test_csv_reader_quoted_titles_and_header(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama|Romance\n2,Heat (1995),Action\n'
    )
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n2,2,x,1\n"
    )
    raw = read_movielens_csv(tmp_path, max_bad_fraction=0.5)
    assert raw.items["1"].title == "American President, The (1995)"
    assert [(x.user, x.item, x.rating) for x in raw.interactions] == [("1", "1", 4.0), ("1", "2", 3.5)]
    assert raw.issues.counts == {"bad_value": 1}
    (tmp_path / "ratings.csv").write_text("user,movie\n1,1\n")
    with pytest.raises(DataError, match="lacks columns"):
        read_movielens_csv(tmp_path)


def _review(user: str, asin: str, t: int, text: str = "Nice &amp; <b>good</b>") -> dict[str, object]:
    return {
        "reviewerID": user,
        "asin": asin,
        "overall": 5.0,
        "unixReviewTime": t,
        "reviewText": text,
        "summary": "s",
    }


def test_amazon_json_literal_fallback_bad_lines_and_titles(tmp_path: Path) -> None:
    meta = write_gz_lines(
        tmp_path / "meta_X.json.gz",
        [
            {"asin": "A1", "title": "Card &amp; Co", "description": ["Desc one.<br>", ""], "category": ["X"]},
            "{'asin': 'A2', 'title': '<span class=\"a-size-medium a-color-secondary\"', 'brand': 'Pub',"
            " 'description': ['A magazine about cats. It has photos.'], 'category': ['Mags', 'Pets']}",
            {"asin": "A3", "title": "", "category": ["Mags", "Cooking"]},
            {"asin": "A1", "title": "duplicate record"},
        ],
    )
    reviews = [_review("u1", "A1", 5), _review("u1", "A2", 3), _review("u2", "A3", 1), _review("u2", "Z9", 2)]
    reviews_path = write_gz_lines(tmp_path / "X_5.json.gz", [*reviews, "{not json", '{"asin": "A1"}'])
    raw = read_amazon2018(reviews_path, meta, max_bad_fraction=0.5)
    assert raw.name == "X"
    assert raw.issues.counts == {"duplicate_meta": 1, "bad_json": 1, "missing_field": 1, "missing_meta": 1}
    a1, a2, a3 = raw.items["A1"], raw.items["A2"], raw.items["A3"]
    assert (a1.title, a1.description, a1.extra["title_source"]) == ("Card & Co", "Desc one.", "title")
    assert (a2.title, a2.brand, a2.extra["title_source"]) == ("A magazine about cats.", "Pub", "description")
    assert a2.extra["raw_title"].startswith("<span")
    assert (a3.title, a3.extra["title_source"]) == ("Cooking", "category")
    assert raw.interactions[0].review == "Nice & good" and raw.interactions[0].summary == "s"


def test_amazon_corrupt_gzip_raises(tmp_path: Path) -> None:
    meta = write_gz_lines(tmp_path / "meta_X.json.gz", [{"asin": "A1", "title": "t"}])
    reviews = tmp_path / "X_5.json.gz"
    data = gzip.compress(bytes(range(256)) * 50)
    for broken in (data[: len(data) // 2], b"not a gzip file"):  # truncated stream, not gzip at all
        reviews.write_bytes(broken)
        with pytest.raises(DataError, match="X_5.json.gz: cannot read"):
            read_amazon2018(reviews, meta)
