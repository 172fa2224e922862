"""Named datasets: where each lives in the shared folder, how to read it, and where to download it.

Checksums are the sha256 of the unmodified files in /work/shared/data (see each folder's README for
their provenance, md5 and cross-checks). For MovieLens the public file is a zip whose own digest we
could not take offline, so the sha256 listed is of the *extracted member*; `download.py` verifies the
members after extraction. ML-1M and ml-latest-small have no reference copy: sha256=None, checked only by
the reader's format checks (a warning says so). Note ml-latest-small is re-issued by GroupLens over time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from training.data.amazon import read_amazon2018
from training.data.errors import DataError
from training.data.lines import DEFAULT_MAX_BAD_FRACTION
from training.data.readers import read_movielens_100k, read_movielens_csv, read_movielens_dat
from training.data.types import RawDataset

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
AMAZON_2018 = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"


class FolderReader(Protocol):
    def __call__(self, folder: Path, *, name: str, max_bad_fraction: float) -> RawDataset: ...


@dataclass(frozen=True)
class RemoteFile:
    """One file a dataset needs, as `name` in its folder, downloadable from `url`."""

    name: str
    url: str
    sha256: str | None  # of the file itself (of the extracted member for zips); None = unknown
    member: str | None = None  # path inside the zip at `url`; None when `url` is the file itself


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # folder name under the shared data dir / the cache dir
    reader: FolderReader
    files: tuple[RemoteFile, ...]


def _amazon_reader(category: str) -> FolderReader:
    def read(folder: Path, *, name: str, max_bad_fraction: float) -> RawDataset:
        return read_amazon2018(
            folder / f"{category}_5.json.gz",
            folder / f"meta_{category}.json.gz",
            name=name,
            max_bad_fraction=max_bad_fraction,
        )

    return read


def _amazon_files(category: str, reviews_sha: str, meta_sha: str) -> tuple[RemoteFile, ...]:
    return (
        RemoteFile(
            f"{category}_5.json.gz", f"{AMAZON_2018}/categoryFilesSmall/{category}_5.json.gz", reviews_sha
        ),
        RemoteFile(f"meta_{category}.json.gz", f"{AMAZON_2018}/metaFiles2/meta_{category}.json.gz", meta_sha),
    )


def _zip_files(release: str, members: dict[str, str | None]) -> tuple[RemoteFile, ...]:
    url = f"{GROUPLENS}/{release}.zip"
    return tuple(RemoteFile(name, url, sha, member=f"{release}/{name}") for name, sha in members.items())


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        "ml-100k",
        "ml-100k",
        read_movielens_100k,
        _zip_files(
            "ml-100k",
            {
                "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
                "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
                "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            },
        ),
    ),
    "ml-1m": DatasetSpec(
        "ml-1m", "ml-1m", read_movielens_dat, _zip_files("ml-1m", {"ratings.dat": None, "movies.dat": None})
    ),
    "ml-latest-small": DatasetSpec(
        "ml-latest-small",
        "ml-latest-small",
        read_movielens_csv,
        _zip_files("ml-latest-small", {"ratings.csv": None, "movies.csv": None}),
    ),
    "amazon-magazine": DatasetSpec(
        "amazon-magazine",
        "amazon2018-magazine-subscriptions-5core",
        _amazon_reader("Magazine_Subscriptions"),
        _amazon_files(
            "Magazine_Subscriptions",
            "95c124603d62d6acdfd1bd62284934fb6c513db836ea64c2e8176c14256426f2",
            "4e64f9028648dee43200a4bd3e7b8c497ffd80ea52018e8f994a5fbd5d97faf6",
        ),
    ),
    "amazon-giftcards": DatasetSpec(
        "amazon-giftcards",
        "amazon2018-gift-cards-5core",
        _amazon_reader("Gift_Cards"),
        _amazon_files(
            "Gift_Cards",
            "41e1f0e50d3c1c9d7d949fb6315944c8bde51ea6b7429a29fdd0d02cbc07ef25",
            "07fd154b7275ab9b1537e3802913508c7a5f84ed00f73201cd3fa18b2b51b342",
        ),
    ),
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None


def read_dataset(
    name: str, folder: Path, *, max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
) -> RawDataset:
    """Read the registered dataset `name` from `folder` (which holds its files, e.g. /work/shared/data/ml-100k)."""
    return get_spec(name).reader(folder, name=name, max_bad_fraction=max_bad_fraction)
