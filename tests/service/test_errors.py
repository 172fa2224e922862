"""The one mapping of domain exceptions to HTTP carries their headers (Retry-After, WWW-Authenticate)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.errors import (
    RateLimited,
    Unauthorized,
    error_headers,
    error_status_and_body,
    register_error_handlers,
)


def test_exception_handler_sends_the_error_headers() -> None:
    app = FastAPI()
    register_error_handlers(app)

    @app.get("/limited")
    async def limited() -> None:
        raise RateLimited("slow down", details={"retry_after_ms": 1500}, headers={"Retry-After": "2"})

    r = TestClient(app).get("/limited")
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert r.json() == {
        "error": {"code": "rate_limited", "message": "slow down", "details": {"retry_after_ms": 1500}}
    }


def test_unauthorized_asks_for_a_bearer_token() -> None:
    exc = Unauthorized("send a key")
    assert error_status_and_body(exc)[0] == 401
    assert error_headers(exc)["WWW-Authenticate"].startswith("Bearer")
    assert error_headers(ValueError("x")) == {}
