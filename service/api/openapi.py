"""The OpenAPI document, completed with what only the running service knows.

FastAPI builds the document from the routes; this wraps that build so that
- the request schemas carry the configured `max_history` as `maxItems` (a limit the schema can express), and
- the request examples name items of the served catalogue (a static example would name ids that one bundle
  has and the next does not: a client trying it, or a contract fuzzer replaying it, would get a 422).
The result is cached per bundle, like FastAPI caches its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.settings import Settings

_HISTORY_FIELDS = ("history", "events")  # the request fields bounded by max_history


def _complete(node: Any, max_items: int, example_ids: list[str]) -> None:
    """Set maxItems on every history-like array property and put catalogue ids into the request examples,
    wherever the schema declares them (components, or request bodies declared inline)."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for field in _HISTORY_FIELDS:
                if isinstance(props.get(field), dict) and props[field].get("type") == "array":
                    props[field]["maxItems"] = max_items
        examples = node.get("examples")
        if example_ids and isinstance(examples, list):
            for example in examples:
                for field in _HISTORY_FIELDS:
                    if isinstance(example, dict) and isinstance(example.get(field), list):
                        n = len(example[field])
                        example[field] = (example_ids * n)[:n]
        for value in node.values():
            _complete(value, max_items, example_ids)
    elif isinstance(node, list):
        for value in node:
            _complete(value, max_items, example_ids)


def install_openapi(
    app: FastAPI, settings: Callable[[], Settings], catalogue_sample: Callable[[], tuple[str, list[str]]]
) -> None:
    """`catalogue_sample()`: (the served bundle's id, a few of its catalogue ids), or ("", []) before startup."""
    cache: dict[str, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        bundle_id, example_ids = catalogue_sample()
        if bundle_id not in cache:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            _complete(schema, settings().max_history, example_ids)
            cache.clear()
            cache[bundle_id] = schema
        app.openapi_schema = cache[bundle_id]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
