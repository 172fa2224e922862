"""Operator endpoints under /v1/admin/ (the `admin` API-key scope guards this prefix): the bundle served."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from service.api.deps import ResourcesDep
from service.api.protocol import errors

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class SwapRequest(BaseModel):
    path: str | None = Field(
        default=None, description="bundle directory to load; unset: the configured bundle_dir, resolved again"
    )


class SwapResponse(BaseModel):
    bundle_id: str
    previous_bundle_id: str | None
    path: str  # the directory every file was read from (symlinks resolved)
    load_ms: float


class BundleStatus(BaseModel):
    bundle_id: str
    path: str  # resolved directory the current bundle was read from
    configured_path: str  # bundle_dir as configured (typically the bundles/current link)
    generation: int  # 1 at startup, +1 per swap
    loaded_at: str  # ISO-8601 UTC
    load_ms: float
    inflight: int  # requests holding the current bundle
    retired_inflight: int  # requests still finishing on swapped-out bundles
    watch_s: float  # 0: the configured path is not watched
    watch_failures: int


@router.post("/bundle", response_model=SwapResponse, responses=errors(408, 409, 422, 503))
async def swap_bundle(res: ResourcesDep, body: Annotated[SwapRequest | None, Body()] = None) -> SwapResponse:
    """Load and verify a bundle, then serve it; requests in flight finish on the bundle they started on.
    409 `bundle_refused` (naming the file and the problem; the old bundle keeps serving) or
    `swap_in_progress`."""
    result = await res.lifecycle.swap(Path(body.path) if body and body.path else None)
    return SwapResponse(**asdict(result))


@router.get("/bundle", response_model=BundleStatus, responses=errors(503))
async def bundle_status(res: ResourcesDep) -> BundleStatus:
    life, gen = res.lifecycle, res.generation
    return BundleStatus(
        bundle_id=gen.bundle_id, path=str(gen.path), configured_path=str(life.bundle_dir), generation=gen.number,
        loaded_at=gen.loaded_at, load_ms=gen.load_ms, inflight=gen.inflight,
        retired_inflight=sum(g.inflight for g in life.retired), watch_s=life.watch_s,
        watch_failures=life.watch_failures,
    )  # fmt: skip
