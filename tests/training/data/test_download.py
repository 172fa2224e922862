"""Downloader against a local http.server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from training.data import (
    DATASETS,
    ChecksumError,
    DataError,
    DatasetSpec,
    DownloadError,
    RemoteFile,
    download_file,
    extract_members,
    read_dataset,
    resolve_dataset_dir,
)
from training.data.readers import read_movielens_dat


class Server:
    """Serves `root`; paths listed in `failures` answer 503 that many times first. Counts requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests[self.path] += 1
                if server.failures[self.path] > 0:
                    server.failures[self.path] -= 1
                    self.send_error(503, "try again")
                    return
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    s = Server(root)
    thread = threading.Thread(target=s.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


RATINGS = b"1::10::5::978300760\n1::20::3::978300761\n1::30::4::978300762\n"
MOVIES = b"10::A (2000)::Drama\n20::B (2001)::Comedy\n30::C (2002)::Action\n"


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tiny/ratings.dat", RATINGS)
        z.writestr("tiny/movies.dat", MOVIES)
    return path


def _no_temp_files(folder: Path) -> bool:
    return not list(folder.rglob("*.part"))


def test_download_success(server: Server, tmp_path: Path) -> None:
    (server.root / "f.bin").write_bytes(b"hello" * 1000)
    dest = tmp_path / "dl" / "f.bin"
    assert download_file(f"{server.url}/f.bin", dest, _sha(b"hello" * 1000)) == dest
    assert dest.read_bytes() == b"hello" * 1000 and _no_temp_files(dest.parent)


def test_checksum_mismatch_deletes_and_reports(server: Server, tmp_path: Path) -> None:
    (server.root / "f.bin").write_bytes(b"tampered")
    dest = tmp_path / "dl" / "f.bin"
    with pytest.raises(ChecksumError, match=f"expected {'0' * 64}, got {_sha(b'tampered')}"):
        download_file(f"{server.url}/f.bin", dest, "0" * 64, backoff=0)
    assert not dest.exists() and _no_temp_files(dest.parent)
    assert server.requests["/f.bin"] == 1  # a mismatch is not retried


def test_404_fails_without_retry(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{server.url}/missing.bin", tmp_path / "x", None, retries=3, backoff=0)
    assert server.requests["/missing.bin"] == 1 and not (tmp_path / "x").exists()


def test_transient_failure_is_retried(server: Server, tmp_path: Path) -> None:
    (server.root / "f.bin").write_bytes(b"data")
    server.failures["/f.bin"] = 2
    dest = download_file(f"{server.url}/f.bin", tmp_path / "f.bin", _sha(b"data"), retries=3, backoff=0)
    assert dest.read_bytes() == b"data" and server.requests["/f.bin"] == 3
    server.failures["/f.bin"] = 5
    with pytest.raises(DownloadError, match="after 2 attempts"):
        download_file(f"{server.url}/f.bin", tmp_path / "g.bin", None, retries=2, backoff=0)


def test_extract_members_verifies(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "tiny.zip")
    files = [RemoteFile("ratings.dat", "u", _sha(RATINGS), member="tiny/ratings.dat")]
    (out,) = extract_members(archive, files, tmp_path / "x")
    assert out.read_bytes() == RATINGS
    with pytest.raises(ChecksumError, match="tiny/movies.dat"):
        extract_members(
            archive, [RemoteFile("movies.dat", "u", "f" * 64, member="tiny/movies.dat")], tmp_path / "y"
        )
    assert not (tmp_path / "y" / "movies.dat").exists() and _no_temp_files(tmp_path / "y")
    with pytest.raises(DataError, match="not in the archive"):
        extract_members(archive, [RemoteFile("a", "u", None, member="tiny/a")], tmp_path / "z")


def test_resolve_downloads_once_then_uses_cache(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _zip(server.root / "tiny.zip")
    url = f"{server.url}/tiny.zip"
    files = (
        RemoteFile("ratings.dat", url, _sha(RATINGS), member="tiny/ratings.dat"),
        RemoteFile("movies.dat", url, None, member="tiny/movies.dat"),
    )
    monkeypatch.setitem(DATASETS, "tiny", DatasetSpec("tiny", "tiny-folder", read_movielens_dat, files))
    cache = tmp_path / "cache"
    folder = resolve_dataset_dir("tiny", None, cache, shared_root=tmp_path / "no-shared")
    assert folder == cache / "tiny-folder" and (folder / "movies.dat").read_bytes() == MOVIES
    assert not (folder / ".download" / "tiny.zip").exists()
    assert len(read_dataset("tiny", folder).interactions) == 3
    assert resolve_dataset_dir("tiny", None, cache, shared_root=None) == folder
    assert server.requests["/tiny.zip"] == 1  # the second call used the verified cache

    shared = tmp_path / "shared" / "tiny-folder"
    shared.mkdir(parents=True)
    (shared / "ratings.dat").write_bytes(RATINGS)
    (shared / "movies.dat").write_bytes(MOVIES)
    assert resolve_dataset_dir("tiny", None, cache, shared_root=tmp_path / "shared") == shared
    assert resolve_dataset_dir("tiny", tmp_path / "shared", cache) == shared  # data_dir: parent or folder
    (shared / "movies.dat").unlink()
    with pytest.raises(DataError, match=r"needs files \['movies.dat'\]"):
        resolve_dataset_dir("tiny", shared, cache)


def test_resolve_prefers_the_shared_copy_and_knows_the_registry(tmp_path: Path) -> None:
    from tests.training.data.conftest import SHARED, shared_folder

    shared_folder("ml-100k")
    assert resolve_dataset_dir("ml-100k", None, tmp_path) == SHARED / "ml-100k"  # verified, not downloaded
    with pytest.raises(DataError, match="unknown dataset"):
        resolve_dataset_dir("ml-nope", None, tmp_path)
