"""Data layer: read public datasets, preprocess them into sequences, split, and store them.

Typical use: `ds = prepare("ml-100k", None, Path(".cache/data"), Path("runs/data/ml-100k"))`, then
`load_dataset(...)` and `leave_one_out(ds)` in later stages.
"""

from training.data.amazon import read_amazon2018
from training.data.download import download_dataset, download_file, extract_members, resolve_dataset_dir
from training.data.errors import ChecksumError, DataError, DownloadError
from training.data.preprocess import preprocess
from training.data.readers import read_movielens_100k, read_movielens_csv, read_movielens_dat
from training.data.registry import DATASETS, DatasetSpec, RemoteFile, read_dataset
from training.data.split import leave_one_out
from training.data.store import load_dataset, prepare, save_dataset
from training.data.types import PAD, Interaction, ItemMeta, RawDataset, ReadIssues, SequenceDataset, Split

__all__ = [
    "DATASETS",
    "PAD",
    "ChecksumError",
    "DataError",
    "DatasetSpec",
    "DownloadError",
    "Interaction",
    "ItemMeta",
    "RawDataset",
    "ReadIssues",
    "RemoteFile",
    "SequenceDataset",
    "Split",
    "download_dataset",
    "download_file",
    "extract_members",
    "leave_one_out",
    "load_dataset",
    "prepare",
    "preprocess",
    "read_amazon2018",
    "read_dataset",
    "read_movielens_100k",
    "read_movielens_csv",
    "read_movielens_dat",
    "resolve_dataset_dir",
    "save_dataset",
]
