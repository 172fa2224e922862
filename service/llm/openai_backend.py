"""Remote LLM backend: a vLLM OpenAI-compatible server (started for the bundle by
`python -m service.llm.remote_server`), spoken to over `/v1/completions` with one httpx connection pool that
the backend owns. Same contract as the in-process backends (base.py).

- Prompts go as token ids, tokenized here with the base model's own tokenizer (loaded locally; it also
  renders prompts and tokenizes labels), so the server tokenizes nothing differently; soft-prompted prompts
  go as `prompt_embeds` (a base64 `torch.save` tensor: the soft-prompt vectors, then the prompt's token
  embeddings from the local embedding table), which the server casts to its dtype.
- Adapters by served name (remote_server.py: `<bundle name>-<hash of its weights>`; base-weight requests
  name the zero adapter `base-weights`).
- Constrained choice: vLLM's `structured_outputs: {"choice": [...]}` request field.
- Label scores: one generated step with vLLM's `logprob_token_ids` (requires `logprobs` set), which returns
  the raw log-probabilities of exactly those tokens, as in process (vllm_backend.py says why `logprobs=N`
  alone is wrong: the N most likely tokens of the whole vocabulary miss labels); `return_tokens_as_token_ids`
  keys them `token_id:<id>` instead of by decoded text, which two tokens may share.
- Deadline and cancellation: a call past its deadline, or whose caller gave up, closes its HTTP connection;
  the server's completion route watches for the disconnect and aborts the request in the engine
  (vllm.entrypoints.serve.utils.api_utils.with_cancellation; a stream's response does the same).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import torch

from recbundle.rerank import log_softmax
from service.llm.base import (
    EXPLAIN_ADAPTER,
    DeadlineExceeded,
    Generation,
    check_score_request,
    render_chat,
    until,
)
from service.llm.remote_server import ServedNames
from service.llm.soft_prompt import soft_prompt_and_table

logger = logging.getLogger(__name__)

# connections to the server at once: a stream or a request in flight holds one (explanations stream per item,
# reranks one each); past it calls wait for a free one, within their deadline
MAX_CONNECTIONS = 256


class RemoteLLMError(RuntimeError):
    """The LLM server could not be reached or answered with an error."""


class RemoteLLMMismatch(RuntimeError):
    """The LLM server does not serve what the bundle needs."""


async def check_server(client: httpx.AsyncClient, names: ServedNames, url: str) -> None:
    """The server lists the base model and every adapter the bundle needs (GET /v1/models)."""
    response = await client.get("models")
    if response.status_code != 200:
        raise RemoteLLMError(f"GET {url}/models answered {response.status_code}: {response.text[:200]}")
    served = {m["id"] for m in response.json()["data"]}
    missing = sorted(names.required() - served)
    if missing:
        raise RemoteLLMMismatch(
            f"the LLM server at {url} does not serve {missing} (it serves {sorted(served)}); start it for this "
            "bundle with `python -m service.llm.remote_server --bundle BUNDLE_DIR` (adapters are served under "
            "their bundle name and a hash of their weights)"
        )


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        client: httpx.AsyncClient,
        tokenizer: Any,
        names: ServedNames,
        soft_prompt: torch.Tensor | None = None,
        embed_table: torch.Tensor | None = None,
        on_error: Callable[[str], object] | None = None,
    ) -> None:
        self._client = client
        self.tokenizer = tokenizer
        self.names = names
        self.adapter_names = frozenset(names.adapters)
        self.soft_prompt = soft_prompt
        self.embed_table = embed_table
        self.has_soft_prompt = soft_prompt is not None
        self._gen_model = names.adapters.get(EXPLAIN_ADAPTER, names.base)  # generation and `choose`
        self._on_error = on_error or (lambda reason: None)

    @classmethod
    async def connect(
        cls,
        url: str,
        model: str,
        names: ServedNames,
        *,
        api_key: str | None = None,
        soft_prompt: Path | None = None,
        connect_timeout_s: float = 2.0,
        on_error: Callable[[str], object] | None = None,
    ) -> OpenAIBackend:
        """Check the server at `url` (…/v1) serves `names`, and load the tokenizer (and, for a soft prompt,
        the embedding table) of the local base model folder `model`."""
        from transformers import AutoTokenizer

        url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # no read timeout: every call bounds its own wait by its deadline and closes the connection past it
        client = httpx.AsyncClient(
            base_url=url + "/", headers=headers, timeout=httpx.Timeout(None, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=32),
        )  # fmt: skip
        try:
            await check_server(client, names, url)
            tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, model)
            soft = table = None
            if soft_prompt is not None:
                soft, table = await asyncio.to_thread(soft_prompt_and_table, model, soft_prompt)
        except BaseException:
            await client.aclose()
            raise
        logger.info("LLM server %s: model %s, adapters %s", url, names.model, sorted(names.adapters.values()))
        return cls(client, tokenizer, names, soft, table, on_error)

    def render(self, system: str, user: str, prefix: str = "") -> str:
        return render_chat(self.tokenizer, system, user, prefix)

    def _ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def _prompt(self, prompt: str, soft: bool = False) -> dict[str, Any]:
        """The request's prompt fields: token ids, or with `soft` the prompt's embeddings behind the
        soft-prompt vectors (fp32; the server casts them to its dtype, as the in-process engine does)."""
        ids = self._ids(prompt)
        if not soft:
            return {"prompt": ids}
        assert self.soft_prompt is not None and self.embed_table is not None
        embeds = torch.cat([self.soft_prompt.float(), self.embed_table[torch.tensor(ids)].float()])  # (S+T, H)
        buffer = io.BytesIO()
        torch.save(embeds.contiguous(), buffer)
        return {"prompt_embeds": base64.b64encode(buffer.getvalue()).decode()}

    def _body(self, model: str, max_tokens: int, sample: bool = False, **extra: Any) -> dict[str, Any]:
        sampling = {"temperature": 0.7, "top_p": 0.9} if sample else {"temperature": 0.0}
        return {"model": model, "max_tokens": max_tokens, **sampling, **extra}

    def _error(self, reason: str, message: str) -> RemoteLLMError:
        self._on_error(reason)
        return RemoteLLMError(message)

    async def _post(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """POST /completions and its JSON answer; TimeoutError past `deadline`, the connection closed then
        (as when the caller cancels), so the server aborts the request."""
        try:
            response = await until(self._client.post("completions", json=body), deadline)
        except httpx.TransportError as e:
            raise self._error("unreachable", f"LLM server unreachable: {type(e).__name__}: {e}") from e
        if response.status_code != 200:
            raise self._error("status", f"LLM server answered {response.status_code}: {response.text[:300]}")
        try:
            data: dict[str, Any] = response.json()
            data["choices"].sort(key=lambda c: c["index"])
        except (ValueError, KeyError, TypeError) as e:
            raise self._error("protocol", f"LLM server answer not understood: {response.text[:300]}") from e
        return data

    async def generate(
        self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False
    ) -> Generation:
        if not prompts:
            return Generation([], 0)
        # one request for the batch: the server runs its prompts as separate engine requests, batched
        body = self._body(self._gen_model, max_new_tokens, sample, prompt=[self._ids(p) for p in prompts])
        try:
            data = await self._post(body, deadline)
        except TimeoutError:  # the connection was closed: the server aborted every prompt
            return Generation([""] * len(prompts), 0, stopped_early=True)
        texts = [c["text"].strip() for c in data["choices"]]
        return Generation(texts, int(data.get("usage", {}).get("completion_tokens", 0)))

    async def stream(self, prompt: str, max_new_tokens: int, deadline: float) -> AsyncIterator[str]:
        body = self._body(self._gen_model, max_new_tokens, stream=True, **self._prompt(prompt))
        request = self._client.build_request("POST", "completions", json=body)
        try:
            response = await until(self._client.send(request, stream=True), deadline)
        except TimeoutError:
            return
        except httpx.TransportError as e:
            raise self._error("unreachable", f"LLM server unreachable: {type(e).__name__}: {e}") from e
        try:
            if response.status_code != 200:
                await response.aread()
                raise self._error("status", f"LLM server answered {response.status_code}: {response.text[:300]}")
            async for piece in self._pieces(response, deadline):
                yield piece
        finally:
            await response.aclose()  # unfinished: closes the connection, and the server aborts the request

    async def _pieces(self, response: httpx.Response, deadline: float) -> AsyncIterator[str]:
        """The text pieces of an SSE completion stream, until it ends or `deadline` passes."""
        lines = response.aiter_lines()
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(anext(lines), remaining)
            except (StopAsyncIteration, TimeoutError):
                return
            except httpx.TransportError as e:
                raise self._error("unreachable", f"LLM stream broke: {type(e).__name__}: {e}") from e
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            try:
                text = json.loads(payload)["choices"][0]["text"]
            except (ValueError, KeyError, IndexError) as e:
                raise self._error("protocol", f"LLM stream event not understood: {payload[:300]}") from e
            if text:
                yield text

    async def choose(self, prompt: str, choices: list[str], deadline: float, soft_prompt: bool = False) -> str:
        if not choices:
            raise ValueError("choose() needs at least one choice")
        if soft_prompt and self.soft_prompt is None:
            raise ValueError("this backend has no soft prompt: the bundle names none")
        # a budget in bytes, not in the choice's own tokens (vllm_backend.py says why)
        longest = max(len(c.encode()) for c in choices)
        body = self._body(
            self._gen_model, longest + 2, structured_outputs={"choice": choices}, **self._prompt(prompt, soft_prompt)
        )
        try:
            data = await self._post(body, deadline)
        except TimeoutError:
            raise DeadlineExceeded("choose() reached its deadline") from None
        text = str(data["choices"][0]["text"]).strip()
        if text not in choices:  # the grammar allows nothing else; a cut-off answer would land here
            raise RuntimeError(f"constrained choice returned {text!r}, not one of {len(choices)} choices")
        return text

    async def score_labels(
        self, prompt: str, label_ids: list[int], deadline: float, *, soft_prompt: bool, adapter: str | None
    ) -> list[float]:
        check_score_request(soft_prompt, self.soft_prompt is not None, adapter, self.adapter_names)
        model = self.names.adapters[adapter] if adapter else self.names.base
        body = self._body(
            model, 1, logprobs=1, logprob_token_ids=list(label_ids), return_tokens_as_token_ids=True,
            **self._prompt(prompt, soft_prompt),
        )  # fmt: skip
        try:
            data = await self._post(body, deadline)
        except TimeoutError:
            raise DeadlineExceeded("score_labels() reached its deadline") from None
        try:
            step = data["choices"][0]["logprobs"]["top_logprobs"][0]
            return log_softmax([float(step[f"token_id:{t}"]) for t in label_ids])
        except (KeyError, IndexError, TypeError) as e:
            raise self._error("protocol", f"LLM server returned no log-prob for a label ({e!r})") from e

    async def aclose(self) -> None:
        await self._client.aclose()
