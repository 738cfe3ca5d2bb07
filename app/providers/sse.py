"""Server-sent events read from a model API's streaming response.

The adapters let the official SDKs do what they are good at (requests, auth, timeouts, turning
HTTP error statuses into typed exceptions) and read the event stream here: building the SDK's
typed model for every chunk costs more CPU than everything else Docent does per token, and
under 50 concurrent streams that CPU is time to first token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from app.errors import ProviderError
from app.providers import Finished, StopReason, Usage, estimate_tokens


@dataclass
class Event:
    name: str
    data: str

    def json(self) -> Any:
        """The parsed data; ValueError when it is not JSON (the adapter reports it as a
        malformed response)."""
        return json.loads(self.data)


async def events(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    """Events of an SSE stream: ``event:`` and ``data:`` fields up to a blank line. Comments
    and fields Docent does not use are skipped."""
    name = ""
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield Event(name or "message", "\n".join(data))
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    # An event not ended by a blank line was cut off: it is dropped, and the caller notices
    # the missing terminal event.


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
