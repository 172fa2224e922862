"""Key entries: digests only, loaded from the environment and a file, refused when inconsistent."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.auth.__main__ import main as cli
from service.auth.keys import ApiKey, AuthConfigError, KeyRing, hash_key, load_keys, new_key
from service.main import create_app
from service.settings import Settings
from tests.service.auth.conftest import ITEM
from tests.service.conftest import ClientFactory


def test_a_new_key_is_random_and_only_its_digest_is_kept() -> None:
    raw, entry = new_key("app", ["recommend"])
    other, _ = new_key("app", ["recommend"])
    assert raw != other and len(raw) >= 40
    assert entry.sha256 == hashlib.sha256(raw.encode()).hexdigest() == hash_key(raw)
    assert raw not in entry.model_dump_json()
    ring = KeyRing([entry])
    assert ring.lookup(raw) == entry
    assert ring.lookup(other) is None and ring.lookup("") is None


def test_entries_are_validated() -> None:
    digest = hash_key("k")
    assert ApiKey(name="a", sha256=digest.upper(), scopes=frozenset({"admin"})).sha256 == digest
    for bad in (
        {"name": "a", "sha256": digest, "scopes": ["root"]},  # unknown scope
        {"name": "a", "sha256": digest, "scopes": []},
        {"name": "a", "sha256": "abc", "scopes": ["admin"]},  # not a sha256 hex digest
        {"name": "a b", "sha256": digest, "scopes": ["admin"]},
        {"name": "a", "sha256": digest, "scopes": ["admin"], "key": "k"},  # a raw key has no field
        {"name": "a", "sha256": digest, "scopes": ["admin"], "rate_per_s": -1},
    ):
        with pytest.raises(ValidationError):
            ApiKey.model_validate(bad)


def test_duplicate_names_or_digests_are_refused() -> None:
    _, a = new_key("a", ["recommend"])
    _, b = new_key("a", ["sessions"])
    with pytest.raises(AuthConfigError, match="'a' is configured twice"):
        KeyRing([a, b])
    with pytest.raises(AuthConfigError, match="same digest"):
        KeyRing([a, a.model_copy(update={"name": "c"})])


def test_keys_from_the_environment_and_a_file_are_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw_env, env_entry = new_key("env-key", ["recommend"])
    raw_file, file_entry = new_key("file-key", ["sessions", "admin"], rate_per_s=5, burst=7)
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([json.loads(file_entry.model_dump_json())]))
    monkeypatch.setenv("SEQREC_API_KEYS", json.dumps([json.loads(env_entry.model_dump_json())]))
    monkeypatch.setenv("SEQREC_API_KEYS_FILE", str(path))
    settings = Settings()
    assert settings.api_keys == [env_entry]
    ring = load_keys(settings.api_keys, settings.api_keys_file)
    assert ring.names() == ["env-key", "file-key"]
    assert ring.lookup(raw_env) == env_entry
    assert ring.lookup(raw_file) == file_entry and file_entry.rate_per_s == 5 and file_entry.burst == 7


def test_an_unreadable_or_invalid_keys_file_stops_the_start(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    with (
        pytest.raises(AuthConfigError, match="cannot read"),
        make_client(api_keys_file=tmp_path / "missing.json"),
    ):
        pass
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with (
        pytest.raises(AuthConfigError, match="not a JSON list"),
        make_client(api_keys_file=tmp_path / "bad.json"),
    ):
        pass


def test_auth_required_without_keys_refuses_to_start(make_client: ClientFactory) -> None:
    with pytest.raises(AuthConfigError, match="no API keys"), make_client(auth_required=True):
        pass


def test_no_keys_means_an_open_api_and_a_warning(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="service.auth"), make_client() as client:
        assert client.get(f"/v1/items/{ITEM}").status_code == 200
    assert any("API authentication is off" in r.getMessage() for r in caplog.records)


def test_auth_required_false_turns_configured_keys_off(make_client: ClientFactory) -> None:
    _, entry = new_key("a", ["admin"])
    with make_client(api_keys=[entry], auth_required=False) as client:
        assert client.get(f"/v1/items/{ITEM}").status_code == 200


def test_new_key_cli_prints_a_key_and_an_entry_that_work(
    capsys: pytest.CaptureFixture[str], bundle_dir: Path
) -> None:
    cli(["new-key", "--name", "mobile", "--scopes", "recommend,sessions", "--rate-per-s", "3"])
    lines = capsys.readouterr().out.splitlines()
    raw, entry = lines[1], json.loads(lines[3])
    assert entry == {
        "name": "mobile",
        "sha256": hash_key(raw),
        "scopes": ["recommend", "sessions"],
        "rate_per_s": 3.0,
    }
    app = create_app(
        Settings(bundle_dir=bundle_dir, llm_backend="none", api_keys=[ApiKey.model_validate(entry)])
    )
    with TestClient(app) as client:
        assert client.get(f"/v1/items/{ITEM}", headers={"X-API-Key": raw}).status_code == 200
        assert client.get(f"/v1/items/{ITEM}").status_code == 401
    with pytest.raises(SystemExit):
        cli(["new-key", "--name", "x", "--scopes", "recommend,root"])


def test_hash_cli_reads_the_key_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("my-key\n"))
    cli(["hash"])
    assert capsys.readouterr().out.strip() == hash_key("my-key")
