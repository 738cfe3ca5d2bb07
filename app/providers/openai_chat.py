"""OpenAI chat completions, streaming, through the official SDK. With ``base_url`` any
OpenAI-compatible server works the same way: vLLM, Ollama, llama.cpp server, LM Studio.

The SDK never retries (``max_retries=0``): the fallback chain is the only retry loop. Every
SDK exception becomes a ``ProviderError`` here; nothing above this file imports ``openai``.
A stream that ends without a ``finish_reason`` or ``[DONE]`` is reported as interrupted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import openai

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
    "stop": "stop",
    "length": "length",
    "content_filter": "refused",
    "tool_calls": "stop",
    "function_call": "stop",
}


def translate(provider: str, exc: Exception) -> ProviderError:
    """The vendor exception as Docent's ProviderError."""
    if isinstance(exc, ProviderError):
        return exc
    from_aiohttp = aiohttp_error(provider, exc)
    if from_aiohttp is not None:
        return from_aiohttp
    if isinstance(exc, openai.APITimeoutError):
        return timed_out(provider, exc)
    if isinstance(exc, openai.APIConnectionError):
        return unreachable(provider, exc)
    if isinstance(exc, openai.APIStatusError):
        body: Any = exc.body
        error = body.get("error", body) if isinstance(body, dict) else None
        etype = code = None
        detail = str(exc)
        if isinstance(error, dict):
            etype = error.get("type") or error.get("code")
            code = error.get("code")
            detail = str(error.get("message", detail))
        status = exc.status_code if exc.status_code >= 300 else None
        headers = dict(exc.response.headers)
        return classify(provider, status, headers, etype, detail, str(code) if code else None)
    if isinstance(exc, openai.OpenAIError | ValueError | KeyError | TypeError):
        return unreadable(provider, exc)
    transport = transport_error(provider, exc)
    if transport is not None:
        return transport
    raise exc


def _inband(provider: str, error: Any) -> ProviderError:
    """An error object sent inside a 200 stream."""
    if not isinstance(error, dict):
        return classify(provider, None, {}, "server_error", str(error))
    etype = error.get("type") or error.get("code") or "server_error"
    code = error.get("code")
    message = str(error.get("message", ""))
    return classify(provider, None, {}, str(etype), message, str(code) if code else None)


class OpenAIChatProvider:
    def __init__(
        self,
        model: str,
        api_key: str | None,
        base_url: str | None = None,
        connect_timeout_s: float = 1.0,
        read_timeout_s: float = 30.0,
        aiohttp: bool = False,
        temperature: float = 0.2,
        interval_ms: int = 0,
    ) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self._temperature = temperature
        # Only over aiohttp does a read return everything that has arrived; httpx returns one
        # HTTP chunk (one event) a read, so a wait after each would throttle the stream.
        self._interval_s = interval_ms / 1000 if aiohttp else 0.0
        timeout = openai.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "unset",
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            # aiohttp parses HTTP in C: about half the CPU per streamed token (bench_relay).
            http_client=openai.DefaultAioHttpClient(timeout=timeout) if aiohttp else None,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str | Finished]:
        messages: list[Any] = [{"role": "system", "content": request.system}]
        messages += [{"role": role, "content": content} for role, content in request.history]
        messages.append({"role": "user", "content": request.prompt or request.question})
        headers = {"x-request-id": request.request_id} if request.request_id else {}
        state = sse.StreamState()
        try:
            async with (
                self._client.chat.completions.with_streaming_response.create(
                    model=self.model,
                    messages=messages,
                    max_tokens=request.max_tokens,
                    temperature=self._temperature,
                    stream=True,
                    stream_options={"include_usage": True},
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
        missing = "a finish reason" + (" (it sent [DONE])" if state.ended else "")
        yield sse.finish(self.name, state.stop, state.usage, state.sent, missing)

    def _read(self, batch: list[sse.Event], state: sse.StreamState) -> tuple[str, Exception | None]:
        """The text of a batch of events, and the failure that ended it, if one did (the
        text before a failure is still passed on, as it would have been one event earlier)."""
        texts: list[str] = []
        try:
            for event in batch:
                if event.data.strip() == "[DONE]":
                    state.ended = True
                    break
                chunk = event.json()
                if not isinstance(chunk, dict):
                    raise ValueError("a stream chunk is not a JSON object")
                if "error" in chunk:
                    raise _inband(self.name, chunk["error"])
                if chunk.get("usage"):
                    state.usage.input_tokens = int(chunk["usage"].get("prompt_tokens") or 0)
                    state.usage.output_tokens = int(chunk["usage"].get("completion_tokens") or 0)
                for choice in (chunk.get("choices") or [])[:1]:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        texts.append(text)
                    if choice.get("finish_reason"):
                        state.stop = _STOP.get(choice["finish_reason"], "stop")
        except Exception as exc:
            return "".join(texts), exc
        return "".join(texts), None

    async def aclose(self) -> None:
        await self._client.close()
