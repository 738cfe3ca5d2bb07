"""Writing an answer stream: order, keepalive comments, errors, and a client that leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from app.web.sse import KEEPALIVE, send_with_keepalive


class Client:
    """The ASGI side of one response: what was sent, and a switch to leave."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.ended = False
        self.gone = asyncio.Event()
        self.wrote = asyncio.Event()

    async def send(self, message: Any) -> None:
        assert not self.ended, "nothing may follow the end of the response"
        self.sent.append(message["body"])
        self.wrote.set()
        self.ended = not message["more_body"]

    async def receive(self) -> Any:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def parts(self) -> list[str | None]:
        body = [b for b in self.sent if b]
        return [None if b == KEEPALIVE else b.decode() for b in body]


async def write(source: AsyncGenerator[bytes, None], interval: float) -> Client:
    client = Client()
    await send_with_keepalive(source, client.send, client.receive, interval)
    return client


def test_chunks_keep_their_order_and_silence_gets_keepalives() -> None:
    async def source() -> AsyncGenerator[bytes, None]:
        yield b"a"
        await asyncio.sleep(0.35)  # about three intervals of silence
        yield b"b"
        yield b"c"

    client = asyncio.run(write(source(), 0.1))
    out = client.parts()
    assert [x for x in out if x is not None] == ["a", "b", "c"]
    assert out[0] == "a" and 2 <= out.count(None) <= 4
    assert out.index("b") > out.index(None)
    assert client.ended and client.sent[-1] == b""


def test_no_keepalive_while_chunks_flow() -> None:
    async def source() -> AsyncGenerator[bytes, None]:
        for i in range(30):
            await asyncio.sleep(0.01)
            yield str(i).encode()

    assert None not in asyncio.run(write(source(), 0.05)).parts()


def test_an_error_in_the_answer_reaches_the_server() -> None:
    async def source() -> AsyncGenerator[bytes, None]:
        yield b"a"
        raise RuntimeError("adapter bug")

    with pytest.raises(RuntimeError, match="adapter bug"):
        asyncio.run(write(source(), 1.0))


def test_a_cancellation_raised_from_inside_is_an_error_not_a_hang() -> None:
    async def source() -> AsyncGenerator[bytes, None]:
        yield b"a"
        raise asyncio.CancelledError  # e.g. a library cancelling its own scope wrongly

    with pytest.raises(RuntimeError, match="cancelled from inside"):
        asyncio.run(asyncio.wait_for(write(source(), 1.0), 5))


def test_a_client_that_leaves_closes_the_answer_at_once() -> None:
    closed: list[float] = []

    async def source() -> AsyncGenerator[bytes, None]:
        try:
            yield b"a"
            await asyncio.sleep(60)
            yield b"never"
        finally:
            closed.append(asyncio.get_running_loop().time())

    async def main() -> tuple[float, Client, bool]:
        client = Client()
        task = asyncio.current_task()
        assert task is not None
        writing = asyncio.ensure_future(
            send_with_keepalive(source(), client.send, client.receive, 10.0)
        )
        await asyncio.wait_for(client.wrote.wait(), 2)
        left = asyncio.get_running_loop().time()
        client.gone.set()
        await asyncio.wait_for(writing, 2)  # returns quietly: the client left
        return closed[0] - left, client, writing.cancelling() == 0

    took, client, uncancelled = asyncio.run(main())
    assert took < 0.5
    assert client.parts() == ["a"] and not client.ended
    assert uncancelled, "the request's task carries no cancellation on"


def test_the_end_never_overtakes_a_keepalive_being_written() -> None:
    class SlowClient(Client):
        async def send(self, message: Any) -> None:
            if message["body"] == KEEPALIVE:
                await asyncio.sleep(0.2)  # a full socket buffer
            await super().send(message)

    async def source() -> AsyncGenerator[bytes, None]:
        yield b"a"
        await asyncio.sleep(0.15)  # one keepalive starts, then the answer ends

    async def main() -> Client:
        client = SlowClient()
        await send_with_keepalive(source(), client.send, client.receive, 0.1)
        return client

    client = asyncio.run(main())
    assert client.ended and client.sent[-1] == b"" and KEEPALIVE in client.sent
