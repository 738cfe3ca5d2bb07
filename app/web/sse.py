"""Server-sent events: answer events framed safely, with keepalive comments while waiting.

A model's first token can take a while, and proxies drop idle streams, so a stream that has
sent nothing for ``interval`` seconds gets a comment. The answer is read and written by the
request's own task (``send_with_keepalive``): a timer, re-armed only when it fires, checks for
silence and only then starts a task to write the comment. (Handing every event from the
answer's task to the writer's through a queue cost two task wake-ups a token, and every token
of every stream paid them.) A second task waits for the client to leave and then cancels the
request's task, which closes the answer and so the provider's HTTP stream at once.

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
from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send

from app.models import AnswerEvent

SSE_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
KEEPALIVE = b": keepalive\r\n\r\n"


def event_bytes(name: str, data: Any) -> bytes:
    """One SSE event. ``json.dumps`` escapes CR, LF and U+2028 (``ensure_ascii``), so the
    content cannot end the data line or forge fields; event names are Docent's own."""
    return f"event: {name}\r\ndata: {json.dumps(data)}\r\n\r\n".encode()


async def send_with_keepalive(
    body: AsyncGenerator[bytes, None],
    send: Send,
    receive: Receive,
    interval: float,
    comment: bytes = KEEPALIVE,
) -> None:
    """Write ``body`` as the response body, ``comment`` whenever nothing was written for
    ``interval`` seconds, then end the response. When the client leaves, ``body`` is closed
    at once (its task is cancelled) and this returns quietly. An error in ``body`` is raised
    here (the response is then cut off); a ``CancelledError`` that ``body`` raises by itself,
    not from a cancellation of this task, becomes a RuntimeError rather than ending the request
    as if it had been cancelled."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    last = loop.time()
    left = False
    pinging: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None

    async def listen() -> None:
        nonlocal left
        while (await receive())["type"] != "http.disconnect":
            pass
        left = True
        task.cancel()

    def ping() -> None:
        nonlocal timer, pinging, last
        now = loop.time()
        if now >= last + interval:
            if pinging is None or pinging.done():
                message = {"type": "http.response.body", "body": comment, "more_body": True}
                pinging = loop.create_task(send(message))  # type: ignore[arg-type]
                pinging.add_done_callback(_consume)
            last = now
        timer = loop.call_at(last + interval, ping)

    watcher = loop.create_task(listen())
    watcher.add_done_callback(_consume)
    timer = loop.call_at(last + interval, ping)
    try:
        async with aclosing(body) as chunks:
            async for chunk in chunks:
                last = loop.time()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        timer.cancel()
        timer = None
        if pinging is not None:
            with suppress(Exception):
                await pinging  # the end must not overtake a comment being written
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError as exc:
        if left:
            task.uncancel()
            return
        if not task.cancelling():
            raise RuntimeError("the answer stream was cancelled from inside") from exc
        raise
    finally:
        if timer is not None:
            timer.cancel()
        watcher.cancel()
        if pinging is not None:
            pinging.cancel()
    if left and task.cancelling():  # the client left as the answer ended
        task.uncancel()


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a helper task's outcome so that asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


class _KeptAlive:
    """The ASGI side of ``KeptAliveStream``: Litestar's start of the response (status,
    headers, cookies) and its after-response hook, with the body from
    ``send_with_keepalive``."""

    def __init__(
        self,
        inner: ASGIResponse,
        body: AsyncGenerator[bytes, None],
        interval: float,
        comment: bytes,
    ) -> None:
        self._inner, self._body, self._interval, self._comment = inner, body, interval, comment

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner.start_response(send=send)
        if self._inner.is_head_response:
            await self._body.aclose()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await send_with_keepalive(self._body, send, receive, self._interval, self._comment)
        await self._inner.after_response()


class KeptAliveStream(Stream):
    """A streaming response whose body is written by ``send_with_keepalive``."""

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        interval: float,
        comment: bytes = KEEPALIVE,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(body, media_type="text/event-stream", headers=headers or SSE_HEADERS)
        self._body, self._interval, self._comment = body, interval, comment

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        inner = super().to_asgi_response(*args, **kwargs)
        return _KeptAlive(inner, self._body, self._interval, self._comment)  # type: ignore[return-value]


def sse_response(body: AsyncGenerator[bytes, None], interval: float) -> Stream:
    return KeptAliveStream(body, interval)


async def answer_stream(source: AsyncGenerator[AnswerEvent, None]) -> AsyncGenerator[bytes, None]:
    """Docent's own SSE contract (ARCHITECTURE.md), as bytes for ``sse_response``."""
    async with aclosing(source) as events:
        async for event in events:
            yield event_bytes(event.event, event.data)
