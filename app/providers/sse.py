"""Server-sent events read from a model API's streaming response.

The adapters let the official SDKs do what they are good at (requests, auth, timeouts, turning
HTTP error statuses into typed exceptions) and read the event stream here: building the SDK's
typed model for every chunk costs more CPU than everything else Docent does per token, and
under 50 concurrent streams that CPU is time to first token.

The stream is read as the byte chunks that arrive, and every chunk's complete events are handed
to the adapter together (``batches``), so text that arrived together is passed on as one piece.
After passing text on, ``relay`` waits until ``interval_s`` has gone by before reading again:
the tokens that arrive meanwhile wait in the connection's buffer and are read,
parsed and relayed as one piece. Relaying a piece costs the server about the same whatever its
length (waking the reader, the answer path, one SSE event written), so fewer pieces are less
CPU: at 50 streams of 100 words a second, 15% less server CPU an answer with 40 ms than with
none (evals/bench_answer.py, docs/benchmarks.md). A reader sees the text arrive 25 times a
second. The first piece of text is never held back.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from app.errors import ProviderError
from app.providers import Finished, StopReason, Usage, estimate_tokens

# SSE lines end in CRLF, LF or a lone CR (str.splitlines would also split on U+2028 and other
# characters that JSON strings may hold raw).
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class Event:
    name: str
    data: str

    def json(self) -> Any:
        """The parsed data; ValueError when it is not JSON (the adapter reports it as a
        malformed response)."""
        return json.loads(self.data)


class Parser:
    """Incremental SSE parsing: bytes in, complete events out. ``event:`` and ``data:``
    fields up to a blank line; comments and fields Docent does not use are skipped."""

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self._tail = ""
        self._started = False
        self._name = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")  # a byte-order mark may open the stream
        return self._lines(self._tail + text, final=False)

    def close(self) -> list[Event]:
        """The stream has ended: a CR held back at the end of the last chunk ended a line. An
        event not ended by a blank line was cut off: it is dropped, and the adapter notices
        the missing terminal event."""
        return self._lines(self._tail + self._decode(b"", final=True), final=True)

    def _lines(self, text: str, final: bool) -> list[Event]:
        # A CR at the end may be the first half of a CRLF: keep it for the next chunk.
        held = "\r" if text.endswith("\r") and not final else ""
        lines = _LINE_END.split(text[:-1] if held else text)
        self._tail = lines.pop() + held
        out: list[Event] = []
        for line in lines:
            if not line:
                if self._data:
                    out.append(Event(self._name or "message", "\n".join(self._data)))
                self._name, self._data = "", []
                continue
            if line[0] == ":":
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value[:1] == " " else value
            if field == "data":
                self._data.append(value)
            elif field == "event":
                self._name = value
        return out


async def batches(chunks: AsyncIterator[bytes]) -> AsyncGenerator[list[Event], None]:
    """The complete events of each chunk read from the stream, chunk by chunk (chunks that
    complete no event are skipped)."""
    parser = Parser()
    async for chunk in chunks:
        events = parser.feed(chunk)
        if events:
            yield events
    events = parser.close()
    if events:
        yield events


@dataclass
class StreamState:
    """What one model stream has said so far, besides its text; the adapter's reader fills it
    in as events come."""

    usage: Usage = field(default_factory=Usage)
    stop: StopReason | None = None
    ended: bool = False
    """Its terminal event came (``[DONE]``, ``message_stop``)."""
    sent: list[str] = field(default_factory=list)


Reader = Callable[[list[Event], StreamState], tuple[str, Exception | None]]


async def relay(
    chunks: AsyncIterator[bytes], read: Reader, state: StreamState, interval_s: float
) -> AsyncGenerator[str, None]:
    """The text of a model's stream, a piece per batch of events. ``read`` turns a batch into
    its text and the failure that ended it, if one did: the text before a failure is passed
    on first. After passing text on, the next read waits until ``interval_s`` has gone by,
    unless the stream is only ending."""
    async with aclosing(batches(chunks)) as events:
        async for batch in events:
            text, failure = read(batch, state)
            if text:
                state.sent.append(text)
                passed = time.monotonic()
                yield text
            if failure is not None:
                raise failure
            if state.ended:
                return
            if text and state.stop is None and interval_s > 0:
                left = passed + interval_s - time.monotonic()
                if left > 0:
                    await asyncio.sleep(left)


def finish(
    provider: str, stop: StopReason | None, usage: Usage, sent: list[str], missing: str
) -> Finished:
    """The ``Finished`` of a stream that ended; ``stop`` None means its terminal event
    (``missing``) never came, so the answer may be cut short: an interruption, not an answer.
    Usage the provider did not report is estimated from the text and flagged."""
    if stop is None:
        raise ProviderError(
            f"{provider}'s stream ended without {missing}",
            provider=provider,
            kind="interrupted",
            retryable=True,
        )
    if not usage.output_tokens:
        usage.output_tokens = estimate_tokens("".join(sent))
        usage.estimated = True
    return Finished(stop, usage)
