"""Anthropic's Messages API, streaming, through the official SDK.

The SDK never retries (``max_retries=0``): the fallback chain is the only retry loop. Every
SDK exception becomes a ``ProviderError`` here; nothing above this file imports ``anthropic``.
A stream that ends without ``message_stop`` is reported as interrupted, never as an answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anthropic

from app.errors import ProviderError
from app.providers import Finished, GenerationRequest, StopReason, sse
from app.providers.http_errors import (
    aiohttp_error,
    classify,
    timed_out,
    transport_error,
    unreachable,
    unreadable,
)

_STOP: dict[str, StopReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "refused",
}


def translate(provider: str, exc: Exception) -> ProviderError:
    """The vendor exception as Docent's ProviderError."""
    if isinstance(exc, ProviderError):
        return exc
    from_aiohttp = aiohttp_error(provider, exc)
    if from_aiohttp is not None:
        return from_aiohttp
    if isinstance(exc, anthropic.APITimeoutError):
        return timed_out(provider, exc)
    if isinstance(exc, anthropic.APIConnectionError):
        return unreachable(provider, exc)
    if isinstance(exc, anthropic.APIStatusError):
        body: Any = exc.body
        error = body.get("error") if isinstance(body, dict) else None
        etype = error.get("type") if isinstance(error, dict) else None
        detail = error.get("message", "") if isinstance(error, dict) else str(exc)
        status = exc.status_code if exc.status_code >= 300 else None  # 200: in-band error
        return classify(provider, status, dict(exc.response.headers), etype, str(detail))
    if isinstance(exc, anthropic.AnthropicError | ValueError | KeyError | TypeError):
        return unreadable(provider, exc)
    transport = transport_error(provider, exc)
    if transport is not None:
        return transport
    raise exc


class AnthropicProvider:
    def __init__(
        self,
        model: str,
        api_key: str | None,
        base_url: str | None = None,
        connect_timeout_s: float = 1.0,
        read_timeout_s: float = 30.0,
        aiohttp: bool = False,
        interval_ms: int = 0,
    ) -> None:
        self.model = model
        self.name = f"anthropic:{model}"
        # Only over aiohttp does a read return everything that has arrived; httpx returns one
        # HTTP chunk (one event) a read, so a wait after each would throttle the stream.
        self._interval_s = interval_ms / 1000 if aiohttp else 0.0
        timeout = anthropic.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or "unset",
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            # aiohttp parses HTTP in C: about half the CPU per streamed token (bench_relay).
            http_client=anthropic.DefaultAioHttpClient(timeout=timeout) if aiohttp else None,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str | Finished]:
        messages: list[Any] = [
            {"role": role, "content": content} for role, content in request.history
        ]
        messages.append({"role": "user", "content": request.prompt or request.question})
        headers = {"x-request-id": request.request_id} if request.request_id else {}
        state = sse.StreamState()
        try:
            async with (
                self._client.messages.with_streaming_response.create(
                    model=self.model,
                    system=request.system,
                    messages=messages,
                    max_tokens=request.max_tokens,
                    stream=True,
                    extra_headers=headers,
                ) as response,
                aclosing(
                    sse.relay(response.iter_bytes(), self._read, state, self._interval_s)
                ) as texts,
            ):
                async for text in texts:
                    yield text
        except Exception as exc:
            raise translate(self.name, exc) from exc
        stop = (state.stop or "stop") if state.ended else None
        yield sse.finish(self.name, stop, state.usage, state.sent, "message_stop")

    def _read(self, batch: list[sse.Event], state: sse.StreamState) -> tuple[str, Exception | None]:
        """The text of a batch of events, and the failure that ended it, if one did (the
        text before a failure is still passed on, as it would have been one event earlier)."""
        texts: list[str] = []
        try:
            for event in batch:
                if event.name == "ping":
                    continue
                data = event.json()
                if not isinstance(data, dict):
                    raise ValueError("a stream event is not a JSON object")
                kind = data.get("type", event.name)
                if kind == "error" or event.name == "error":
                    error = data.get("error") or {}
                    raise classify(
                        self.name, None, {}, error.get("type"), str(error.get("message", ""))
                    )
                if kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        texts.append(delta["text"])
                elif kind == "message_start":
                    message_usage = (data.get("message") or {}).get("usage") or {}
                    state.usage.input_tokens = int(message_usage.get("input_tokens") or 0)
                elif kind == "message_delta":
                    reason = (data.get("delta") or {}).get("stop_reason")
                    if reason:
                        state.stop = _STOP.get(reason, "stop")
                    output = (data.get("usage") or {}).get("output_tokens")
                    if output:
                        state.usage.output_tokens = int(output)
                elif kind == "message_stop":
                    state.ended = True
                    break
        except Exception as exc:
            return "".join(texts), exc
        return "".join(texts), None

    async def aclose(self) -> None:
        await self._client.close()
