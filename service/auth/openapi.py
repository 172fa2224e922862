"""The security schemes and the 401/403/429 answers of protected routes, added to the app's OpenAPI
schema from the same path table the middleware enforces (service/auth/policy.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service.auth.policy import requirement

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the API key"},
}
# the service's one error shape (service/errors.py error_body); a component of the same name registered by
# the routes themselves takes precedence
_ERROR_SCHEMA: dict[str, Any] = {
    "title": "ErrorResponse",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_RESPONSES: dict[str, dict[str, Any]] = {
    "401": {
        "description": "no API key, or an unknown one (`unauthorized`)",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    },
    "403": {"description": "the key lacks the scope this route needs (`forbidden`; the message names both)"},
    "429": {
        "description": "the key is over its rate limit (`rate_limited`; `details.retry_after_ms`)",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
    },
}


def add_security(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    components.setdefault("schemas", {}).setdefault("ErrorResponse", _ERROR_SCHEMA)
    for path, operations in schema.get("paths", {}).items():
        need = requirement(path)
        if need == "open":
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            if need != "authenticated":
                operation["description"] = (
                    operation.get("description", "") + f"\n\nNeeds an API key with scope `{need}`."
                ).strip()
            responses = operation.setdefault("responses", {})
            for status, doc in _RESPONSES.items():  # kept where a route documents them itself, headers added
                response = responses.setdefault(status, {"description": doc["description"]})
                response.setdefault("content", _ERROR_CONTENT)
                response.setdefault("headers", {}).update(doc.get("headers", {}))


def document_security(app: FastAPI, enabled: Callable[[], bool]) -> None:
    """Wraps `app.openapi` (FastAPI builds and caches the schema on the first call, after startup) to add the
    above when the running app requires keys: an open API must not claim to need them (clients and contract
    tests take the schema at its word)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # build() stores its schema in app.openapi_schema
            if enabled():
                add_security(schema)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
