"""The OpenAPI document, completed with what only the running settings know (limits the schema can express).

FastAPI builds the document from the routes once; this wraps that build so the request schemas carry the
configured `max_history` as `maxItems`, and caches the result like FastAPI does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.settings import Settings

_HISTORY_FIELDS = ("history", "events")  # the request fields bounded by max_history


def _bound_histories(node: Any, max_items: int) -> None:
    """Set maxItems on every history-like array property, wherever the schema declares it (components, or
    request bodies declared inline)."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for field in _HISTORY_FIELDS:
                if isinstance(props.get(field), dict) and props[field].get("type") == "array":
                    props[field]["maxItems"] = max_items
        for value in node.values():
            _bound_histories(value, max_items)
    elif isinstance(node, list):
        for value in node:
            _bound_histories(value, max_items)


def install_openapi(app: FastAPI, settings: Callable[[], Settings]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            _bound_histories(schema, settings().max_history)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
