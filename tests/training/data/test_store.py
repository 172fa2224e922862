"""save_dataset / load_dataset round trip and `prepare` end to end on a fixture folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.data.conftest import raw_dataset
from training.data import DataError, Interaction, ItemMeta, load_dataset, prepare, preprocess, save_dataset


def test_round_trip(tmp_path: Path) -> None:
    raw = raw_dataset([(u, i, t) for t, (u, i) in enumerate((u, i) for u in "ab" for i in "xyz")])
    raw.items["x"] = ItemMeta("x", title="Amélie", categories=["A", "B"], brand="b", extra={"k": "v"})
    raw.interactions[0] = Interaction("a", "x", 0, review="très bien\nyes", summary="s")
    ds = preprocess(raw, k_core=0)
    loaded = load_dataset(save_dataset(ds, tmp_path / "out", config={"k_core": 0}))
    assert loaded.name == ds.name and loaded.user_ids == ds.user_ids and loaded.items == ds.items
    assert all(
        np.array_equal(a, b) and b.dtype == np.int64
        for a, b in zip(ds.sequences, loaded.sequences, strict=True)
    )
    assert all(np.array_equal(a, b) for a, b in zip(ds.timestamps, loaded.timestamps, strict=True))
    assert loaded.reviews == ds.reviews == {(0, 1): ("très bien\nyes", "s")}
    assert loaded.stats == ds.stats
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["config"] == {"k_core": 0}


def test_load_rejects_incomplete_or_other_version(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a prepared dataset"):
        load_dataset(tmp_path)
    ds = preprocess(raw_dataset([("a", "x", 1), ("a", "y", 2), ("a", "z", 3)]), k_core=0)
    save_dataset(ds, tmp_path)
    meta = json.loads((tmp_path / "stats.json").read_text())
    (tmp_path / "stats.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(DataError, match="format_version"):
        load_dataset(tmp_path)


def test_prepare_from_data_dir(tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    flags = "|".join(["0"] * 18 + ["1"])
    (folder / "u.item").write_text(
        "".join(f"{i}|M{i}|||u|{flags}\n" for i in range(1, 5)), encoding="latin-1"
    )
    (folder / "u.genre").write_text("".join(f"g{i}|{i}\n" for i in range(19)))
    (folder / "u.data").write_text(
        "".join(f"{u}\t{i}\t{u % 5 + 1}\t{u * 10 + i}\n" for u in range(1, 4) for i in range(1, 5))
    )
    ds = prepare("ml-100k", tmp_path, tmp_path / "cache", tmp_path / "prepared", k_core=2, min_rating=3)
    assert ds.user_ids == ["2", "3"] and ds.items[0].categories == ["g18"]
    assert load_dataset(tmp_path / "prepared").stats == ds.stats
    assert not (tmp_path / "cache").exists()  # nothing downloaded
