"""Server-sent events: answer events framed safely, with keepalive comments while waiting.

Litestar has no keepalive option, so ``keepalive`` yields None whenever the answer has been
silent for ``interval`` seconds (a model's first token can take a while; proxies drop idle
streams), and the encoder turns it into a comment. The answer generator runs in its own task
so the wait can time out; when the client leaves, that task is cancelled and awaited, which
closes the provider's HTTP stream.

The events are framed here, not by Litestar's ``ServerSentEvent``: that response starts every
stream with a hop to a worker thread (it reads its optional preamble with ``sync_to_thread``,
even when there is none), and under load each such hop holds the event loop while the woken
thread takes the interpreter lock. The bytes are the same: ``event:``, ``data:``, CRLF lines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from typing import Any

from litestar.response import Stream

from app.models import AnswerEvent

_END = object()
SSE_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
KEEPALIVE = b": keepalive\r\n\r\n"


def event_bytes(name: str, data: Any) -> bytes:
    """One SSE event. ``json.dumps`` escapes CR, LF and U+2028 (``ensure_ascii``), so the
    content cannot end the data line or forge fields; event names are Docent's own."""
    return f"event: {name}\r\ndata: {json.dumps(data)}\r\n\r\n".encode()


def sse_response(body: AsyncGenerator[bytes, None]) -> Stream:
    return Stream(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def keepalive(
    source: AsyncGenerator[AnswerEvent, None], interval: float
) -> AsyncGenerator[AnswerEvent | None, None]:
    """``source``'s events, and None whenever it has been silent for ``interval`` seconds.

    One task runs the whole answer and hands its events over through a queue; a timer,
    re-armed only when it fires, adds the None. (Starting a task and a timed wait for every
    event cost more CPU per relayed token than anything else here, and every token of every
    stream pays it.) The queue is not bounded, but an answer is (max_tokens): a slow reader
    only holds the rest of one answer in memory. However the task ends, the reader is told,
    so a stream never waits for ever. Closing this cancels the task, which closes ``source``
    and so the provider's HTTP stream, at once."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    last = loop.time()
    timer: asyncio.TimerHandle | None = None

    async def pump() -> None:
        nonlocal last
        try:
            async with aclosing(source) as events:
                async for event in events:
                    last = loop.time()
                    queue.put_nowait(event)
        except Exception as exc:  # handed to the reader, raised there
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(_END)

    def ping() -> None:
        nonlocal timer
        due = last + interval
        if loop.time() >= due and queue.empty():
            queue.put_nowait(None)
            due = loop.time() + interval
        timer = loop.call_at(due, ping)

    task = asyncio.ensure_future(pump())
    timer = loop.call_at(last + interval, ping)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        if timer is not None:
            timer.cancel()
        task.cancel()
        with suppress(BaseException):
            await task


async def answer_stream(
    source: AsyncGenerator[AnswerEvent, None], interval: float
) -> AsyncGenerator[bytes, None]:
    """Docent's own SSE contract (ARCHITECTURE.md), as bytes for ``sse_response``."""
    events = keepalive(source, interval)
    try:
        async for event in events:
            yield KEEPALIVE if event is None else event_bytes(event.event, event.data)
    finally:
        await events.aclose()
