"""The SSE keepalive wrapper: order, keepalive comments, errors, and closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from app.models import AnswerEvent
from app.web.sse import keepalive


def delta(text: str) -> AnswerEvent:
    return AnswerEvent(event="delta", data={"text": text})


async def collect(source: AsyncGenerator[AnswerEvent, None], interval: float) -> list[str | None]:
    out: list[str | None] = []
    async for e in keepalive(source, interval):
        out.append(None if e is None else e.data["text"])
    return out


def test_events_keep_their_order_and_silence_gets_keepalives() -> None:
    async def source() -> AsyncGenerator[AnswerEvent, None]:
        yield delta("a")
        await asyncio.sleep(0.35)  # about three intervals of silence
        yield delta("b")
        yield delta("c")

    out = asyncio.run(collect(source(), 0.1))
    assert [x for x in out if x is not None] == ["a", "b", "c"]
    assert out[0] == "a" and 2 <= out.count(None) <= 4
    assert out.index("b") > out.index(None)


def test_no_keepalive_while_events_flow() -> None:
    async def source() -> AsyncGenerator[AnswerEvent, None]:
        for i in range(30):
            await asyncio.sleep(0.01)
            yield delta(str(i))

    assert None not in asyncio.run(collect(source(), 0.05))


def test_an_error_in_the_answer_reaches_the_reader() -> None:
    async def source() -> AsyncGenerator[AnswerEvent, None]:
        yield delta("a")
        raise RuntimeError("adapter bug")

    with pytest.raises(RuntimeError, match="adapter bug"):
        asyncio.run(collect(source(), 1.0))


def test_a_task_cancelled_from_inside_ends_the_stream_instead_of_hanging() -> None:
    async def source() -> AsyncGenerator[AnswerEvent, None]:
        yield delta("a")
        raise asyncio.CancelledError  # e.g. a library cancelling its own scope wrongly

    out = asyncio.run(asyncio.wait_for(collect(source(), 1.0), 5))
    assert out == ["a"]


def test_closing_the_reader_closes_the_answer_at_once() -> None:
    closed: list[float] = []

    async def source() -> AsyncGenerator[AnswerEvent, None]:
        try:
            yield delta("a")
            await asyncio.sleep(60)
            yield delta("never")
        finally:
            closed.append(asyncio.get_running_loop().time())

    async def main() -> float:
        stream = keepalive(source(), 10.0)
        assert (await anext(stream)) is not None
        started = asyncio.get_running_loop().time()
        await stream.aclose()
        assert closed, "the answer was closed"
        return closed[0] - started

    assert asyncio.run(main()) < 0.5
