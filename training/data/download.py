"""Fetch the public originals for users who have no shared copy: download, verify, extract, resolve.

Every file lands via a temp file in the destination folder and an atomic `os.replace`, so an
interrupted run never leaves a half-written file under the final name. Checksums come from
`registry.py` (sha256 of the shared, unmodified copies; for MovieLens zips, of the extracted members).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from recbundle import sha256_file
from training.data.errors import ChecksumError, DataError, DownloadError
from training.data.registry import DatasetSpec, RemoteFile, get_spec

logger = logging.getLogger(__name__)

# <repo>/../shared/data: the read-only shared copies next to the checkout (training/data/download.py -> <repo>).
DEFAULT_SHARED_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
_CHUNK = 1 << 20
_USER_AGENT = "llm-seqrec-data/0.1 (+python-urllib)"


@contextmanager
def _atomic_target(dest: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield a temp file next to `dest`; the caller renames it; it is deleted on any failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
    finally:
        tmp.unlink(missing_ok=True)  # no-op once renamed


def _check_sha(what: str, expected: str | None, actual: str) -> None:
    if expected is None:
        logger.warning("%s: no known sha256 (got %s); checked by size and format only", what, actual)
    elif actual != expected.lower():
        raise ChecksumError(f"{what}: sha256 mismatch: expected {expected}, got {actual}")


def _fetch_once(url: str, dest: Path, sha256: str | None, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.sha256()
    with _atomic_target(dest) as (out, tmp):
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected_len = response.headers.get("Content-Length")
            n = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                n += len(chunk)
        if expected_len is not None and n != int(expected_len):
            raise ConnectionError(f"truncated transfer: {n} of {expected_len} bytes")
        out.close()
        _check_sha(url, sha256, digest.hexdigest())
        os.replace(tmp, dest)


def download_file(
    url: str, dest: Path, sha256: str | None, *, retries: int = 3, timeout: float = 60, backoff: float = 1.0
) -> Path:
    """Download `url` to `dest`, verifying its sha256 (None: unknown, logged), with retries.

    Network errors, timeouts, truncated transfers and HTTP 5xx/429 are retried (linear backoff);
    other HTTP errors (404, 403) and a checksum mismatch fail at once with `DownloadError` /
    `ChecksumError`, and never leave a file at `dest`.
    """
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            _fetch_once(url, dest, sha256, timeout)
            logger.info("downloaded %s -> %s", url, dest)
            return dest
        except urllib.error.HTTPError as e:  # before URLError: it is a subclass
            if e.code < 500 and e.code != 429:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            last = e
        except (urllib.error.URLError, OSError) as e:  # includes timeouts and ConnectionError
            last = e
        logger.warning("download of %s failed (attempt %d/%d): %s", url, attempt, retries, last)
        if attempt < retries:
            time.sleep(backoff * attempt)
    raise DownloadError(f"{url}: failed after {retries} attempts: {last}")


def extract_members(zip_path: Path, files: Sequence[RemoteFile], dest_dir: Path) -> list[Path]:
    """Extract each `file.member` of `zip_path` to `dest_dir / file.name`, verifying its sha256.

    Targets are the registry's flat names, never the archive's paths, so a crafted member name cannot
    write outside `dest_dir`.
    """
    out = []
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for f in files:
                if f.member is None or f.member not in archive.namelist():
                    raise DataError(f"{zip_path}: member {f.member!r} not in the archive")
                dest = dest_dir / f.name
                with _atomic_target(dest) as (target, tmp), archive.open(f.member) as source:
                    shutil.copyfileobj(source, target, _CHUNK)
                    target.close()
                    _check_sha(f"{zip_path.name}:{f.member}", f.sha256, sha256_file(tmp))
                    os.replace(tmp, dest)
                out.append(dest)
    except zipfile.BadZipFile as e:
        raise DataError(f"{zip_path}: not a valid zip ({e})") from e
    return out


def _missing(spec: DatasetSpec, folder: Path) -> list[str]:
    return [f.name for f in spec.files if not (folder / f.name).is_file()]


def _mismatched(spec: DatasetSpec, folder: Path) -> list[str]:
    return [f.name for f in spec.files if f.sha256 is not None and sha256_file(folder / f.name) != f.sha256]


def download_dataset(
    spec: DatasetSpec, folder: Path, *, retries: int = 3, timeout: float = 60, backoff: float = 1.0
) -> Path:
    """Download every file of `spec` into `folder` (zips: fetched once, members extracted, zip removed)."""
    by_url: dict[str, list[RemoteFile]] = {}
    for f in spec.files:
        by_url.setdefault(f.url, []).append(f)
    for url, files in by_url.items():
        if files[0].member is None:
            for f in files:
                download_file(
                    url, folder / f.name, f.sha256, retries=retries, timeout=timeout, backoff=backoff
                )
            continue
        # The archive's own digest is unknown offline; its members are verified after extraction instead.
        archive = folder / ".download" / url.rsplit("/", 1)[-1]
        download_file(url, archive, None, retries=retries, timeout=timeout, backoff=backoff)
        extract_members(archive, files, folder)
        archive.unlink()
    return folder


def resolve_dataset_dir(
    name: str,
    data_dir: Path | None,
    cache_dir: Path,
    *,
    shared_root: Path | None = DEFAULT_SHARED_ROOT,
    retries: int = 3,
    timeout: float = 60,
) -> Path:
    """Folder holding dataset `name`'s files, in order of preference:

    1. `data_dir` when given (either the dataset folder itself or its parent); missing files raise.
    2. the repo-adjacent shared copy `<shared_root>/<spec.folder>` when it is complete and verifies.
    3. `<cache_dir>/<spec.folder>`, downloaded and verified first unless already complete and valid.
    """
    spec = get_spec(name)
    if data_dir is not None:
        folder = data_dir / spec.folder if (data_dir / spec.folder).is_dir() else data_dir
        if missing := _missing(spec, folder):
            raise DataError(f"{folder}: dataset {name!r} needs files {missing}")
        if bad := _mismatched(spec, folder):  # user-supplied: may be deliberate, so warn only
            logger.warning("%s: %s differ from the public originals (sha256)", folder, bad)
        return folder
    if shared_root is not None:
        shared = shared_root / spec.folder
        if shared.is_dir() and not _missing(spec, shared):
            if bad := _mismatched(spec, shared):
                raise DataError(f"{shared}: {bad} differ from the public originals (sha256)")
            return shared
    folder = cache_dir / spec.folder
    if not _missing(spec, folder) and not _mismatched(spec, folder):
        return folder
    logger.info("dataset %r not found locally; downloading into %s", name, folder)
    return download_dataset(spec, folder, retries=retries, timeout=timeout)
