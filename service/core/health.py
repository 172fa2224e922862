"""Readiness: the state of every component, and whether the service should get traffic."""

from __future__ import annotations

from service.api.protocol import ComponentState, ReadyResponse
from service.errors import StoreUnavailable
from service.resources import Resources


async def readiness(res: Resources | None) -> ReadyResponse:
    if res is None:
        failing = ComponentState(status="failing", detail="not started")
        return ReadyResponse(ready=False, bundle_id=None, components={"bundle": failing})
    b = res.bundle
    components = {
        "bundle": ComponentState(status="ok", detail=f"{b.bundle_id} ({b.n_items} items)"),
        "index": ComponentState(
            status="ok" if b.index.ntotal == b.n_items else "failing",
            detail=f"{b.manifest.index.type}, {b.index.ntotal} vectors, {'GPU' if b.on_gpu else 'CPU'}",
        ),
    }
    try:
        await res.store.ping()
        components["sessions"] = ComponentState(status="ok", detail=res.store.kind)
    except StoreUnavailable as e:
        components["sessions"] = ComponentState(status="failing", detail=e.message)
    llm_status = {"ok": "ok", "disabled": "disabled", "unavailable": "failing"}[res.llm.status]
    components["llm"] = ComponentState(status=llm_status, detail=res.llm.detail)  # type: ignore[arg-type]
    reranker = res.serving.reranker
    components["reranker"] = ComponentState(status=reranker.state, detail=reranker.detail)
    ready = all(c.status != "failing" for c in components.values())
    return ReadyResponse(ready=ready, bundle_id=b.bundle_id, components=components)
