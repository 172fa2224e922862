"""Drive the app at the ASGI level, as uvicorn does: a request whose body arrives when the test says (so it
is in flight, holding its bundle generation, for as long as the test likes), and a client that disconnects."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message


@dataclass
class Exchange:
    """One request: `body_gate` holds its body back until set; `disconnect` makes the client go away
    (the next `receive()` says so and `send` fails, as uvicorn's do)."""

    method: str
    path: str
    body: bytes = b""
    body_gate: asyncio.Event | None = None
    disconnect: asyncio.Event = field(default_factory=asyncio.Event)
    status: int | None = None
    chunks: list[bytes] = field(default_factory=list)
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def post(cls, path: str, payload: Any, **kw: Any) -> Exchange:
        return cls("POST", path, json.dumps(payload).encode(), **kw)

    def json(self) -> Any:
        return json.loads(b"".join(self.chunks))

    async def run(self, app: ASGIApp, owner: Any = None) -> Exchange:
        """Send the request to `app`; `owner`: the Starlette app, when `app` is a layer inside it (the
        application sets `scope["app"]` itself otherwise)."""
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": self.method, "scheme": "http", "path": self.path, "raw_path": self.path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())],
        }  # fmt: skip
        if owner is not None:
            scope["app"] = owner
        body_sent = False

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                if self.body_gate is not None:
                    await self.body_gate.wait()
                body_sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            waits = [asyncio.ensure_future(e.wait()) for e in (self.done, self.disconnect)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if self.disconnect.is_set():
                raise OSError("client disconnected")
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    self.chunks.append(message["body"])
                    self.first_chunk.set()
                if not message.get("more_body", False):
                    self.done.set()

        await app(scope, receive, send)
        return self
