"""A small client-side parser of server-sent events, as a browser's EventSource reads them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_sse(lines: Iterable[str]) -> list[tuple[str, Any]]:
    """(event, JSON data) pairs; an event ends at a blank line; `data:` lines of one event are joined."""
    events: list[tuple[str, Any]] = []
    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        events.append((name, json.loads("\n".join(data))))
    return events


def check_stream(events: list[tuple[str, Any]], k: int) -> dict[str, str | None]:
    """The protocol of POST /v1/recommend/stream; returns the final text per item."""
    assert events[0][0] == "ranking", events[:2]
    ranking = events[0][1]
    ids = [it["item_id"] for it in ranking["items"]]
    assert len(ids) == k and ranking["explanation_status"] == "pending"
    assert events[-1][0] == "explanations_done"
    finals: dict[str, str | None] = {}
    for name, data in events[1:-1]:
        assert name in {"explanation_delta", "explanation"}, name
        assert data["item_id"] in ids
        if name == "explanation":
            finals[data["item_id"]] = data["text"]
        else:
            assert data["item_id"] not in finals, "a piece after its item's final text"
    return finals
