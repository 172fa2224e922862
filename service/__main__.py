"""`python -m service`: serve with uvicorn on SEQREC_HOST:SEQREC_PORT (see docs/service.md), with a graceful
shutdown for load-balanced replicas:

1. SIGTERM (or SIGINT): /readyz answers 503 with `"draining": true` at once, and the server keeps serving
   every request for `shutdown_drain_s`, the time load balancers take to notice and stop sending traffic;
2. then uvicorn's own shutdown: the listener closes, idle keep-alive connections are closed, and requests in
   flight (SSE streams included) get up to `shutdown_grace_s` to finish (past it they are cancelled);
3. then the lifespan closes the bundle generations, the LLM engine and the session store.

A second signal during the drain exits at once (uvicorn's forced exit: no waiting, no lifespan shutdown).
"""

from __future__ import annotations

import logging
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service.main import create_app
from service.settings import Settings

logger = logging.getLogger("service.shutdown")


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal starts a drain (readiness off, still serving) and whose exit
    follows `drain_s` later. The signal handler only sets flags: uvicorn's main loop polls them every 0.1 s."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_s = drain_s
        self._exit_at: float | None = None
        self._signal: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._exit_at is None:
            self.app.state.draining = True
            self._exit_at = time.monotonic() + self.drain_s
            self._signal = sig
            logger.warning("signal %d: draining (/readyz 503) for %.1f s, then shutting down", sig, self.drain_s)
            return
        logger.warning("second signal %d: exiting now", sig)
        self.should_exit = self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and not self.should_exit and time.monotonic() >= self._exit_at:
            logger.info("drain over: closing the listener, waiting for requests in flight")
            assert self._signal is not None
            super().handle_exit(self._signal, None)  # uvicorn's own path (re-raises the signal at exit)
        return await super().on_tick(counter)


def main() -> None:
    settings = Settings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]  # typed int; used as a float
    )
    DrainingServer(config, app, settings.shutdown_drain_s).run()


if __name__ == "__main__":
    main()
