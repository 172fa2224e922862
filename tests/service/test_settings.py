from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQREC_BUNDLE_DIR", "/x/bundle")
    monkeypatch.setenv("SEQREC_REDIS_URL", "redis://localhost:6379/1")
    monkeypatch.setenv("SEQREC_LLM_BACKEND", "none")
    monkeypatch.setenv("SEQREC_EXPLAIN_DEADLINE_MS", "1500")
    s = Settings()
    assert s.bundle_dir == Path("/x/bundle")
    assert s.redis_url == "redis://localhost:6379/1"
    assert s.llm_backend == "none"
    assert s.explain_deadline_ms == 1500


def test_defaults_keep_sessions_in_process() -> None:
    assert Settings().redis_url is None


def test_invalid_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQREC_LLM_BACKEND", "tgi")
    with pytest.raises(ValidationError):
        Settings()


def test_settings_are_not_built_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import service.main

    monkeypatch.setenv("SEQREC_PORT", "not-a-port")
    importlib.reload(service.main)  # would raise if the module built Settings()
    assert service.main.app.state.settings is None
