"""Anthropic's Messages API, streaming, through the official SDK.

The SDK never retries (``max_retries=0``): the fallback chain is the only retry loop. Every
SDK exception becomes a ``ProviderError`` here; nothing above this file imports ``anthropic``.
A stream that ends without ``message_stop`` is reported as interrupted, never as an answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic

from app.errors import ProviderError
from app.providers import Finished, GenerationRequest, StopReason, Usage, estimate_tokens
from app.providers.http_errors import classify, transport_error

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
    if isinstance(exc, anthropic.APITimeoutError):
        cause = type(exc.__cause__).__name__
        if cause == "ConnectTimeout":
            return ProviderError(
                f"{provider} did not accept a connection in time",
                provider=provider,
                kind="connect",
                retryable=True,
            )
        return ProviderError(
            f"{provider} timed out", provider=provider, kind="timeout", retryable=False
        )
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(
            f"{provider} could not be reached ({type(exc.__cause__).__name__})",
            provider=provider,
            kind="connect",
            retryable=True,
        )
    if isinstance(exc, anthropic.APIStatusError):
        body: Any = exc.body
        error = body.get("error") if isinstance(body, dict) else None
        etype = error.get("type") if isinstance(error, dict) else None
        detail = error.get("message", "") if isinstance(error, dict) else str(exc)
        status = exc.status_code if exc.status_code >= 300 else None  # 200: in-band error
        return classify(provider, status, dict(exc.response.headers), etype, str(detail))
    if isinstance(exc, anthropic.AnthropicError | ValueError | KeyError | TypeError):
        return ProviderError(
            f"{provider} sent a response Docent could not read ({type(exc).__name__})",
            provider=provider,
            kind="malformed",
            retryable=False,
        )
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
    ) -> None:
        self.model = model
        self.name = f"anthropic:{model}"
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or "unset",
            base_url=base_url,
            max_retries=0,
            timeout=anthropic.Timeout(read_timeout_s, connect=connect_timeout_s),
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str | Finished]:
        messages: list[Any] = [
            {"role": role, "content": content} for role, content in request.history
        ]
        messages.append({"role": "user", "content": request.prompt or request.question})
        headers = {"x-request-id": request.request_id} if request.request_id else {}
        usage = Usage()
        stop: StopReason | None = None
        finished = False
        sent: list[str] = []
        try:
            stream = await self._client.messages.create(
                model=self.model,
                system=request.system,
                messages=messages,
                max_tokens=request.max_tokens,
                stream=True,
                extra_headers=headers,
            )
        except Exception as exc:
            raise translate(self.name, exc) from exc
        try:
            async for event in stream:
                if event.type == "message_start":
                    usage.input_tokens = event.message.usage.input_tokens or 0
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    sent.append(event.delta.text)
                    yield event.delta.text
                elif event.type == "message_delta":
                    if event.delta.stop_reason:
                        stop = _STOP.get(event.delta.stop_reason, "stop")
                    if event.usage and event.usage.output_tokens:
                        usage.output_tokens = event.usage.output_tokens
                elif event.type == "message_stop":
                    finished = True
        except Exception as exc:
            raise translate(self.name, exc) from exc
        finally:
            await stream.close()
        if not finished:
            raise ProviderError(
                f"{self.name}'s stream ended before message_stop",
                provider=self.name,
                kind="interrupted",
                retryable=True,
            )
        if not usage.output_tokens:
            usage.output_tokens = estimate_tokens("".join(sent))
            usage.estimated = True
        yield Finished(stop or "stop", usage)

    async def aclose(self) -> None:
        await self._client.close()
