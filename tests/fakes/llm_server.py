"""A fake LLM provider speaking the OpenAI and Anthropic wire formats (RELIABILITY.md 4.2).

It runs an asyncio server on 127.0.0.1 in a daemon thread and parses HTTP/1.1 by hand, so it
sees client disconnects as they happen, also while it hangs or stalls on purpose::

    with FakeLLM() as fake:
        fake.script("gpt-x", status(429, {"retry-after": "1"}), ok("Hello there."))
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x", max_retries=0)

Each request pops the next `Step` from its model's queue (or uses `fake.default_step`) and is
recorded as one `Attempt` in `fake.log`. Scripts can also be posted as JSON to `/__control`
(`{"model": "m", "script": [{"kind": "stall_after", "k": 3}]}`); `/__reset` clears the queues
and the log and `GET /__log` returns it. In a step dict, `kind` names a factory below and the
other keys are its arguments.

Semantics worth knowing:
- A token is one whitespace-separated word with its trailing spaces; `k` counts tokens.
- Streams use chunked encoding. `fin_after` ends the chunked body cleanly and then closes the
  socket, so the SDK sees a normal end of stream that merely lacks the terminal event.
- Without streaming, `stall_after` hangs before the headers, `fin_after` / `rst_after` cut the
  JSON body short, `malformed_json` / `garbage_sse_line` return an invalid JSON body and
  `inband_error_after` becomes the HTTP status matching the error type.
- Finish reasons may be given in either dialect ("length" and "max_tokens" are the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import itertools
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, TypedDict, Unpack

Json = dict[str, Any]
TextSource = str | Callable[[Json], str] | None
Dialect = Literal["openai", "anthropic"]

# ---------------------------------------------------------------------------- steps


class _Text(TypedDict, total=False):
    text: TextSource
    ttft_ms: float
    chunk_words: int


class Shape(_Text, total=False):
    """How the answer is produced; accepted by every step that sends text."""

    tokens_per_s: float | None


@dataclass(frozen=True)
class Step:
    """One scripted behaviour; build it with the factory functions below."""

    kind: str = "ok"
    text: TextSource = None  # None: the default answer; a callable gets the request JSON
    ttft_ms: float = 0.0
    tokens_per_s: float | None = None  # None: send everything at once
    chunk_words: int = 1
    after: int | None = None  # tokens sent before the fault fires
    code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error_type: str = "overloaded_error"
    reason: str = "stop"


def ok(
    text: TextSource = None,
    ttft_ms: float = 0,
    tokens_per_s: float | None = None,
    chunk_words: int = 1,
) -> Step:
    return Step("ok", text, ttft_ms, tokens_per_s, chunk_words)


def status(code: int, headers: dict[str, str] | None = None, body: Any = None) -> Step:
    """An HTTP error; `body` None gives the provider-shaped JSON error for `code`."""
    return Step("status", code=code, headers=dict(headers or {}), body=body)


def hang_before_headers() -> Step:
    return Step("hang_before_headers")


def headers_then_hang() -> Step:
    return Step("headers_then_hang")


def stall_after(k: int, **shape: Unpack[Shape]) -> Step:
    """Send k tokens, then nothing, keeping the socket open."""
    return Step("stall_after", after=k, **shape)


def fin_after(k: int, **shape: Unpack[Shape]) -> Step:
    """Send k tokens, then close cleanly without the terminal event."""
    return Step("fin_after", after=k, **shape)


def rst_after(k: int, **shape: Unpack[Shape]) -> Step:
    """Send k tokens, then reset the TCP connection (SO_LINGER 0)."""
    return Step("rst_after", after=k, **shape)


def malformed_json(after: int = 0, **shape: Unpack[Shape]) -> Step:
    return Step("malformed_json", after=after, **shape)


def garbage_sse_line(after: int = 0, **shape: Unpack[Shape]) -> Step:
    """Insert a line that is not an SSE field (spec-compliant parsers ignore it)."""
    return Step("garbage_sse_line", after=after, **shape)


def inband_error_after(k: int, type: str = "overloaded_error", **shape: Unpack[Shape]) -> Step:
    return Step("inband_error_after", after=k, error_type=type, **shape)


def finish_reason(reason: str, after: int | None = None, **shape: Unpack[Shape]) -> Step:
    """End with `reason` ("length", "content_filter", "max_tokens", "refusal", ...);
    `after` truncates the answer to that many tokens."""
    return Step("finish_reason", after=after, reason=reason, **shape)


def duplicate_chunk(k: int, **shape: Unpack[Shape]) -> Step:
    """Send the k-th (0-based) text delta twice."""
    return Step("duplicate_chunk", after=k, **shape)


def missing_usage(**shape: Unpack[Shape]) -> Step:
    return Step("missing_usage", **shape)


def slow(tokens_per_s: float, **shape: Unpack[_Text]) -> Step:
    return replace(Step("slow", **shape), tokens_per_s=tokens_per_s)


STEP_FACTORIES: dict[str, Callable[..., Step]] = {
    f.__name__: f
    for f in (
        ok,
        status,
        hang_before_headers,
        headers_then_hang,
        stall_after,
        fin_after,
        rst_after,
        malformed_json,
        garbage_sse_line,
        inband_error_after,
        finish_reason,
        duplicate_chunk,
        missing_usage,
        slow,
    )
}
# Kinds that interrupt (or corrupt) a stream once `after` tokens have been sent.
_FAULTS = {
    "stall_after",
    "fin_after",
    "rst_after",
    "malformed_json",
    "garbage_sse_line",
    "inband_error_after",
}


def step_from_dict(spec: Json) -> Step:
    """`{"kind": "status", "code": 429, "headers": {...}}` -> status(429, headers=...)."""
    args = dict(spec)
    return STEP_FACTORIES[args.pop("kind", "ok")](**args)


def retry_after_date(seconds: float) -> str:
    """An HTTP-date `seconds` from now, for the date form of `retry-after`."""
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


# ---------------------------------------------------------------------------- telemetry


@dataclass
class Attempt:
    """One request to a completion endpoint, as the fake saw it (times are time.monotonic())."""

    seq: int
    model: str
    dialect: Dialect
    stream: bool
    request_id: str | None  # x-request-id or idempotency-key header
    step: str
    started_at: float
    body: Json
    headers: dict[str, str]
    status: int | None = None
    headers_sent_at: float | None = None
    first_token_at: float | None = None
    ended_at: float | None = None
    client_closed_at: float | None = None  # when the fake observed the client go away
    tokens_sent: int = 0  # text tokens written, a duplicated chunk counted twice
    # Tokens whose write coincided with or followed the close. The fake stops at the next token
    # once it sees the close, so this is 0 or 1 here. A client that abandons a stream without
    # closing it shows up instead as tokens_sent growing while client_closed_at stays None.
    tokens_sent_after_close: int = 0
    outcome: str = "running"  # complete|client_closed|hung|stalled|fin|rst|inband_error|...

    def to_json(self) -> Json:
        return asdict(self)


# ---------------------------------------------------------------------------- answers

_SOURCE = re.compile(r"<source\b([^>]*)>(.*?)</source>", re.S)
_SOURCE_ID = re.compile(r"""\bid\s*=\s*["']([^"']*)["']""")
_SENTENCE = re.compile(r".*?[.!?](?=\s|$)", re.S)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def default_answer(body: Json) -> str:
    """First sentence of source 1 of the last user message plus " [1]", else "I do not know."."""
    users = [
        m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"
    ]
    prompt = _content_text(users[-1].get("content")) if users else ""
    sources = []
    for attrs, inner in _SOURCE.findall(prompt):
        found = _SOURCE_ID.search(attrs)
        sources.append((found.group(1) if found else "", inner))
    if not sources:
        return "I do not know."
    sid, inner = next((s for s in sources if s[0] == "1"), sources[0])
    match = _SENTENCE.match(inner.strip())
    sentence = " ".join((match.group(0) if match else inner).split())
    return f"{sentence} [{sid or 1}]"


def prompt_words(body: Json) -> int:
    texts = [_content_text(body.get("system"))]
    texts += [
        _content_text(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)
    ]
    return sum(len(t.split()) for t in texts)


def split_tokens(text: str) -> list[str]:
    """Words with their trailing whitespace; "".join(result) == text."""
    tokens = re.findall(r"\S+\s*", text)
    lead = text[: len(text) - len(text.lstrip())]
    if tokens and lead:
        tokens[0] = lead + tokens[0]
    return tokens or ([text] if text else [])


# ---------------------------------------------------------------------------- dialects

# status -> (anthropic error type, openai error type, openai error code, message)
_ERRORS: dict[int, tuple[str, str, str | None, str]] = {
    400: ("invalid_request_error", "invalid_request_error", None, "Invalid request."),
    401: ("authentication_error", "invalid_request_error", "invalid_api_key", "Invalid API key."),
    403: ("permission_error", "invalid_request_error", "permission_denied", "Forbidden."),
    404: ("not_found_error", "invalid_request_error", "model_not_found", "Not found."),
    413: ("request_too_large", "invalid_request_error", None, "Request too large."),
    422: ("invalid_request_error", "invalid_request_error", None, "Unprocessable request."),
    429: ("rate_limit_error", "requests", "rate_limit_exceeded", "Rate limit exceeded."),
    500: ("api_error", "server_error", None, "Internal server error."),
    502: ("api_error", "server_error", None, "Bad gateway."),
    503: ("api_error", "server_error", None, "Service unavailable."),
    504: ("timeout_error", "server_error", None, "Gateway timeout."),
    529: ("overloaded_error", "server_error", None, "Overloaded."),
}
_TYPE_STATUS = {"invalid_request_error": 400, "api_error": 500, "overloaded_error": 529}
_TYPE_STATUS |= {e[0]: code for code, e in _ERRORS.items() if e[0] not in _TYPE_STATUS}
_TO_ANTHROPIC = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
_TO_OPENAI = {v: k for k, v in _TO_ANTHROPIC.items()}


def _error_info(code: int) -> tuple[str, str, str | None, str]:
    default = _ERRORS[500] if code >= 500 else _ERRORS[400]
    return _ERRORS.get(code, default)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class _Reply:
    dialect: Dialect
    id: str
    model: str
    input_tokens: int
    include_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))

    # -- shared
    def reason(self, reason: str) -> str:
        table = _TO_ANTHROPIC if self.dialect == "anthropic" else _TO_OPENAI
        return table.get(reason, reason)

    def error_body(self, code: int, message: str | None = None) -> Json:
        a_type, o_type, o_code, default = _error_info(code)
        if self.dialect == "anthropic":
            error = {"type": a_type, "message": message or default}
            return {"type": "error", "error": error, "request_id": self.id}
        return {
            "error": {"message": message or default, "type": o_type, "param": None, "code": o_code}
        }

    def _event(self, name: str, data: Json) -> bytes:
        if self.dialect == "anthropic":
            return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"
        return b"data: " + _dumps(data) + b"\n\n"

    # -- non-stream
    def message(self, text: str, reason: str, out: int, usage: bool) -> Json:
        if self.dialect == "anthropic":
            msg = self._anthropic_message([{"type": "text", "text": text}], reason, out)
            if not usage:
                del msg["usage"]
            return msg
        body: Json = {"id": self.id, "object": "chat.completion", "created": self.created}
        body["model"] = self.model
        message = {"role": "assistant", "content": text, "refusal": None}
        body["choices"] = [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": self.reason(reason)}
        ]
        if usage:
            body["usage"] = self._openai_usage(out)
        return body

    def _anthropic_message(self, content: list[Json], reason: str | None, out: int) -> Json:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": reason and self.reason(reason),
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": out},
        }

    def _openai_usage(self, out: int) -> Json:
        total = self.input_tokens + out
        return {"prompt_tokens": self.input_tokens, "completion_tokens": out, "total_tokens": total}

    def _chunk(self, delta: Json, finish: str | None) -> Json:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created}
        chunk |= {"model": self.model, "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    # -- stream
    def preamble(self, usage: bool) -> list[bytes]:
        if self.dialect == "openai":
            return [self._event("", self._chunk({"role": "assistant", "content": ""}, None))]
        message = self._anthropic_message([], None, 1)
        if not usage:
            del message["usage"]
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        return [
            self._event("message_start", {"type": "message_start", "message": message}),
            self._event("content_block_start", block),
            self._event("ping", {"type": "ping"}),
        ]

    def delta(self, text: str) -> bytes:
        if self.dialect == "openai":
            return self._event("", self._chunk({"content": text}, None))
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        return self._event("content_block_delta", delta)

    def closing(self, reason: str, out: int, usage: bool) -> list[bytes]:
        if self.dialect == "openai":
            events = [self._event("", self._chunk({}, self.reason(reason)))]
            if usage and self.include_usage:
                last = {"id": self.id, "object": "chat.completion.chunk", "created": self.created}
                last |= {"model": self.model, "choices": [], "usage": self._openai_usage(out)}
                events.append(self._event("", last))
            return [*events, b"data: [DONE]\n\n"]
        delta: Json = {"type": "message_delta", "delta": {"stop_reason": self.reason(reason)}}
        delta["delta"]["stop_sequence"] = None
        if usage:
            delta["usage"] = {"output_tokens": out}
        return [
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            self._event("message_delta", delta),
            self._event("message_stop", {"type": "message_stop"}),
        ]

    def inband_error(self, error_type: str) -> bytes:
        message = f"Fake in-band {error_type}."
        if self.dialect == "anthropic":
            error = {"type": "error", "error": {"type": error_type, "message": message}}
            return self._event("error", error)
        return self._event("", {"error": {"message": message, "type": error_type, "code": None}})

    def malformed(self) -> bytes:
        if self.dialect == "anthropic":
            return (
                b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0,\n\n'
            )
        return b'data: {"id": "' + self.id.encode() + b'", "choices": [{"delta": \n\n'


# ---------------------------------------------------------------------------- connections


class _Conn:
    """A client connection: buffered request parsing plus an EOF watcher while responding."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buf = bytearray()
        self.closed = asyncio.Event()
        self.attempt: Attempt | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def _fill(self) -> bool:
        data = await self.reader.read(65536)
        self.buf += data
        return bool(data)

    async def read_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > 65536 or not await self._fill():
                return None
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        method, target, _version = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        while len(self.buf) < length:
            if not await self._fill():
                return None
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return method, target.split("?", 1)[0], headers, body

    def mark_closed(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self.attempt is not None and self.attempt.client_closed_at is None:
            self.attempt.client_closed_at = time.monotonic()

    def watch(self) -> None:
        async def run() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while await self._fill():
                    pass
            self.mark_closed()

        self._watcher = asyncio.create_task(run())

    async def unwatch(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def send(self, data: bytes, *, chunk: bool = False) -> bool:
        if self.closed.is_set():
            return False
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunk else data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.mark_closed()
        return not self.closed.is_set()

    async def pause(self, seconds: float) -> bool:
        """Sleep unless the client goes away first; True while it is still connected."""
        if seconds > 0 and not self.closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), seconds)
        return not self.closed.is_set()

    async def reset(self) -> None:
        transport = self.writer.transport
        transport.set_write_buffer_limits(0)  # drain() now waits for an empty buffer
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()
        await asyncio.sleep(0.05)  # let the client read what was sent before the RST
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


def _head(code: int, headers: dict[str, str]) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = "Overloaded" if code == 529 else "Unknown"
    lines = [f"HTTP/1.1 {code} {phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# ---------------------------------------------------------------------------- server


class FakeLLM:
    """The fake provider; `start()`/`stop()` or use it as a context manager."""

    def __init__(self, port: int = 0, models: tuple[str, ...] = ("fake-model",)) -> None:
        self.port = port
        self.models = list(models)
        self.default_step: Step = ok()
        self.hang_cap_s = 120.0
        self.log: list[Attempt] = []
        self.errors: list[str] = []  # unexpected exceptions inside the server
        self._queues: dict[str, deque[Step]] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def start(self) -> FakeLLM:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError("fake LLM did not start") from (failure[0] if failure else None)
        return self

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            server = loop.run_until_complete(
                # A real provider does not refuse connections when hundreds arrive at once;
                # asyncio's default backlog of 100 would (the SYNs retried after 1, 3, 7 s).
                asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=2048)
            )
            self.port = server.sockets[0].getsockname()[1]
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.run_until_complete(self._cancel_all())
            loop.close()

    async def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop = self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting and telemetry
    def script(self, model: str, *steps: Step) -> None:
        with self._lock:
            self._queues.setdefault(model, deque()).extend(steps)

    def reset(self) -> None:
        with self._lock:
            self._queues.clear()
            self.log.clear()
            self.errors.clear()

    def _next_step(self, model: str) -> Step:
        with self._lock:
            queue = self._queues.get(model)
            return queue.popleft() if queue else self.default_step

    def attempts(self, model: str | None = None) -> list[Attempt]:
        with self._lock:
            return [a for a in self.log if model is None or a.model == model]

    def wait_closed(self, record: Attempt, timeout: float = 1.0) -> bool:
        """Wait until the fake has observed the client closing this attempt's connection."""
        deadline = time.monotonic() + timeout
        while record.client_closed_at is None and time.monotonic() < deadline:
            time.sleep(0.005)
        return record.client_closed_at is not None

    def wait_ended(self, record: Attempt, timeout: float = 1.0) -> bool:
        deadline = time.monotonic() + timeout
        while record.ended_at is None and time.monotonic() < deadline:
            time.sleep(0.005)
        return record.ended_at is not None

    # -- HTTP
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Conn(reader, writer)
        try:
            while (request := await conn.read_request()) is not None:
                if not await self._dispatch(conn, *request) or conn.closed.is_set():
                    break
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping (the task ends here)
        except Exception as exc:
            self.errors.append(repr(exc))
        finally:
            await conn.unwatch()
            writer.close()
            self._tasks.discard(task)

    async def _respond(self, conn: _Conn, code: int, body: Any, headers: dict[str, str]) -> None:
        if isinstance(body, bytes):
            data = body
        else:
            data = body.encode() if isinstance(body, str) else _dumps(body)
        head = {"content-type": "application/json", "content-length": str(len(data)), **headers}
        await conn.send(_head(code, head) + data)

    async def _dispatch(
        self, conn: _Conn, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> bool:
        keep_alive = headers.get("connection", "").lower() != "close"
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            return await self._complete(conn, "openai", headers, raw) and keep_alive
        if method == "POST" and path == "/v1/messages":
            return await self._complete(conn, "anthropic", headers, raw) and keep_alive
        if method == "GET" and path in ("/v1/models", "/models"):
            await self._respond(conn, 200, self._models("anthropic-version" in headers), {})
        elif method == "GET" and path == "/__log":
            await self._respond(conn, 200, {"attempts": [a.to_json() for a in self.attempts()]}, {})
        elif method == "POST" and path == "/__control":
            try:
                spec = json.loads(raw or b"{}")
                steps = [step_from_dict(s) for s in spec.get("script", [])]
                default = step_from_dict(spec["default"]) if "default" in spec else None
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                await self._respond(conn, 400, {"error": {"message": repr(exc)}}, {})
                return keep_alive
            self.default_step = default or self.default_step
            self.script(str(spec.get("model", "")), *steps)
            await self._respond(conn, 200, {"ok": True, "queued": len(steps)}, {})
        elif method == "POST" and path == "/__reset":
            self.reset()
            await self._respond(conn, 200, {"ok": True}, {})
        else:
            body = {"error": {"message": f"No route {method} {path}", "type": "not_found_error"}}
            await self._respond(conn, 404, body, {})
        return keep_alive

    def _models(self, anthropic: bool) -> Json:
        with self._lock:
            names = sorted({*self.models, *self._queues})
        if anthropic:
            created = "2025-01-01T00:00:00Z"
            rows = [
                {"type": "model", "id": n, "display_name": n, "created_at": created} for n in names
            ]
            return {"data": rows, "has_more": False, "first_id": names[0], "last_id": names[-1]}
        listing = [{"id": n, "object": "model", "created": 0, "owned_by": "fake"} for n in names]
        return {"object": "list", "data": listing}

    async def _complete(
        self, conn: _Conn, dialect: Dialect, headers: dict[str, str], raw: bytes
    ) -> bool:
        prefix = "msg_" if dialect == "anthropic" else "chatcmpl-"
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            reply = _Reply(dialect, prefix + uuid.uuid4().hex[:24], "", 0, False)
            await self._respond(conn, 400, reply.error_body(400, "Body is not a JSON object."), {})
            return True
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        model = str(body.get("model", ""))
        reply = _Reply(
            dialect, prefix + uuid.uuid4().hex[:24], model, prompt_words(body), include_usage
        )
        step = self._next_step(model)
        request_id = headers.get("x-request-id") or headers.get("idempotency-key")
        attempt = Attempt(
            seq=next(self._seq),
            model=model,
            dialect=dialect,
            stream=stream,
            request_id=request_id,
            step=step.kind,
            started_at=time.monotonic(),
            body=body,
            headers=headers,
        )
        with self._lock:
            self.log.append(attempt)
        conn.attempt = attempt
        conn.watch()
        try:
            runner = self._stream if stream else self._non_stream
            return await runner(conn, reply, attempt, step, body)
        except asyncio.CancelledError:
            attempt.outcome = "server_stopped"
            raise
        finally:
            await conn.unwatch()
            attempt.ended_at = time.monotonic()
            if attempt.outcome == "running":
                attempt.outcome = "client_closed" if conn.closed.is_set() else "complete"
            conn.attempt = None

    def _tokens(self, step: Step, body: Json) -> list[str]:
        text = step.text(body) if callable(step.text) else step.text
        tokens = split_tokens(default_answer(body) if text is None else text)
        if step.kind == "finish_reason" and step.after is not None:
            tokens = tokens[: step.after]
        return tokens

    async def _hang(self, conn: _Conn, attempt: Attempt, outcome: str) -> bool:
        attempt.outcome = outcome if await conn.pause(self.hang_cap_s) else "client_closed"
        return False

    def _response_headers(self, reply: _Reply, extra: dict[str, str]) -> dict[str, str]:
        return {"x-request-id": reply.id, "request-id": reply.id, **extra}

    async def _status(
        self, conn: _Conn, reply: _Reply, attempt: Attempt, code: int, step: Step
    ) -> bool:
        body = reply.error_body(code) if step.body is None else step.body
        attempt.status, attempt.headers_sent_at = code, time.monotonic()
        await self._respond(conn, code, body, self._response_headers(reply, step.headers))
        return True

    async def _non_stream(
        self, conn: _Conn, reply: _Reply, attempt: Attempt, step: Step, body: Json
    ) -> bool:
        kind, tokens = step.kind, self._tokens(step, body)
        if kind == "status":
            return await self._status(conn, reply, attempt, step.code, step)
        if kind == "inband_error_after":
            return await self._status(
                conn, reply, attempt, _TYPE_STATUS.get(step.error_type, 500), step
            )
        if kind in ("hang_before_headers", "stall_after"):
            return await self._hang(conn, attempt, "hung")
        rate = step.tokens_per_s
        if not await conn.pause(step.ttft_ms / 1000 + (len(tokens) / rate if rate else 0)):
            return False
        out = len(tokens)
        payload = _dumps(reply.message("".join(tokens), step.reason, out, kind != "missing_usage"))
        if kind in ("malformed_json", "garbage_sse_line"):
            payload = payload[: len(payload) // 2]
        headers = {"content-type": "application/json", "content-length": str(len(payload))}
        attempt.status, attempt.headers_sent_at = 200, time.monotonic()
        if kind == "headers_then_hang":
            await conn.send(_head(200, self._response_headers(reply, headers)))
            return await self._hang(conn, attempt, "hung")
        if kind in ("fin_after", "rst_after"):
            await conn.send(
                _head(200, self._response_headers(reply, headers)) + payload[: len(payload) // 2]
            )
            attempt.outcome = kind.removesuffix("_after")
            if kind == "rst_after":
                await conn.reset()
            return False
        attempt.tokens_sent, attempt.first_token_at = out, time.monotonic()
        return await conn.send(_head(200, self._response_headers(reply, headers)) + payload)

    async def _stream(
        self, conn: _Conn, reply: _Reply, attempt: Attempt, step: Step, body: Json
    ) -> bool:
        kind, tokens = step.kind, self._tokens(step, body)
        if kind == "status":
            return await self._status(conn, reply, attempt, step.code, step)
        if kind == "hang_before_headers":
            return await self._hang(conn, attempt, "hung")
        sse = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        sse["transfer-encoding"] = "chunked"
        attempt.status, attempt.headers_sent_at = 200, time.monotonic()
        if not await conn.send(_head(200, self._response_headers(reply, sse))):
            return False
        if kind == "headers_then_hang":
            return await self._hang(conn, attempt, "hung")
        usage = kind != "missing_usage"
        for event in reply.preamble(usage):
            await conn.send(event, chunk=True)
        if not await conn.pause(step.ttft_ms / 1000):
            return False
        pieces = [
            "".join(tokens[i : i + step.chunk_words])
            for i in range(0, len(tokens), step.chunk_words)
        ]
        start, sent, fault = time.monotonic(), 0, kind if kind in _FAULTS else None
        for index, piece in enumerate(pieces):
            if fault and sent >= (step.after or 0):
                if (result := await self._fault(conn, reply, attempt, step)) is not None:
                    return result
                fault = None
            if step.tokens_per_s and not await conn.pause(
                start + sent / step.tokens_per_s - time.monotonic()
            ):
                return False
            copies = 2 if kind == "duplicate_chunk" and index == step.after else 1
            words = len(piece.split()) or 1
            for _ in range(copies):
                if conn.closed.is_set():
                    return False
                still_open = await conn.send(reply.delta(piece), chunk=True)
                attempt.tokens_sent += words
                if attempt.client_closed_at is not None:  # it left while this token was written
                    attempt.tokens_sent_after_close += words
                attempt.first_token_at = attempt.first_token_at or time.monotonic()
                if not still_open:
                    return False
            sent += words
        if fault and (result := await self._fault(conn, reply, attempt, step)) is not None:
            return result
        for event in reply.closing(step.reason, len(tokens), usage):
            await conn.send(event, chunk=True)
        return await conn.send(b"0\r\n\r\n")

    async def _fault(self, conn: _Conn, reply: _Reply, attempt: Attempt, step: Step) -> bool | None:
        """Fire a mid-stream fault; None means carry on streaming afterwards."""
        kind = step.kind
        if kind == "stall_after":
            return await self._hang(conn, attempt, "stalled")
        if kind == "fin_after":
            await conn.send(b"0\r\n\r\n")
            attempt.outcome = "fin"
            return False
        if kind == "rst_after":
            attempt.outcome = "rst"
            await conn.reset()
            return False
        if kind == "inband_error_after":
            await conn.send(reply.inband_error(step.error_type), chunk=True)
            attempt.outcome = "inband_error"
            return await conn.send(b"0\r\n\r\n")
        if kind == "malformed_json":
            await conn.send(reply.malformed(), chunk=True)
        else:  # garbage_sse_line: not a field line, then a blank line
            await conn.send(b"}}} garbage line without a field name {{{\n\n", chunk=True)
        return None
