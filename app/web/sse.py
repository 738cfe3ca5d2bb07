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
from contextlib import aclosing, suppress
from typing import Any

from litestar.response import ServerSentEventMessage

from app.models import AnswerEvent

_END = object()


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
