"""Server-sent events: answer events framed safely, with keepalive comments while waiting.

Litestar has no keepalive option, so ``keepalive`` yields None whenever the answer has been
silent for ``interval`` seconds (a model's first token can take a while; proxies drop idle
streams), and the encoder turns it into a comment. The answer generator runs in its own task
so the wait can time out; when the client leaves, that task is cancelled and awaited, which
closes the provider's HTTP stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from contextlib import suppress
from typing import Any

from litestar.response import ServerSentEventMessage

from app.models import AnswerEvent


async def keepalive(
    source: AsyncGenerator[AnswerEvent, None], interval: float
) -> AsyncGenerator[AnswerEvent | None, None]:
    pending: asyncio.Future[AnswerEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            finished, pending = pending, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        if pending is not None:
            pending.cancel()
            with suppress(BaseException):
                await pending
        await source.aclose()


async def answer_stream(
    source: AsyncGenerator[AnswerEvent, None], interval: float
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """Docent's own SSE contract (ARCHITECTURE.md)."""
    events = keepalive(source, interval)
    try:
        async for event in events:
            if event is None:
                # data=None: otherwise Litestar adds an empty data line, an empty event.
                yield ServerSentEventMessage(comment="keepalive", data=None)
            else:
                # json.dumps escapes CR, LF and U+2028: content cannot forge SSE fields.
                data: Any = json.dumps(event.data)
                yield ServerSentEventMessage(event=event.event, data=data)
    finally:
        await events.aclose()
