"""Readiness: the state of every component, and whether the service should get traffic.

Ready means the ranking path can answer: the bundle is loaded and its index is complete. The session
store, the LLM and the rerank stage are reported, and when one fails the service keeps answering
(inline histories, retrieval order, no explanations) and lists it as degraded: taking every replica out of
service exactly when it runs degraded would turn a partial outage into a total one."""

from __future__ import annotations

from service.api.protocol import ComponentState, ReadyResponse
from service.errors import StoreUnavailable
from service.resources import Resources

RANKING_PATH = ("bundle", "index")  # without these nothing can be ranked: the only reasons for a 503


async def readiness(res: Resources | None, draining: bool = False) -> ReadyResponse:
    """`draining`: the server is shutting down (SIGTERM); not ready, whatever the components say, so load
    balancers stop sending traffic while the requests in flight finish."""
    gen = res.lifecycle.current if res is not None else None
    if res is None or gen is None:
        failing = ComponentState(status="failing", detail="not started")
        return ReadyResponse(ready=False, bundle_id=None, components={"bundle": failing}, draining=draining)
    b = gen.bundle  # one generation for the whole report: a swap during the store ping cannot mix two
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
    llm_status = {"ok": "ok", "disabled": "disabled", "unavailable": "failing"}[gen.llm.status]
    components["llm"] = ComponentState(status=llm_status, detail=gen.llm.detail)  # type: ignore[arg-type]
    reranker = gen.serving.reranker
    components["reranker"] = ComponentState(status=reranker.state, detail=reranker.detail)
    if draining:
        components["server"] = ComponentState(status="failing", detail="draining: shutting down (SIGTERM)")
    ready = not draining and all(components[name].status != "failing" for name in RANKING_PATH)
    degraded = [
        name for name, c in components.items() if c.status == "failing" and name not in (*RANKING_PATH, "server")
    ]
    return ReadyResponse(
        ready=ready, bundle_id=b.bundle_id, components=components, degraded=degraded, draining=draining
    )
