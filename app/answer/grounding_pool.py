"""Offline grounding of finished low-risk answers in worker processes.

Grounding is the largest piece of CPU an answer costs the server (sentence splitting, word and
number checks, embedding the answer's sentences), and for a low-risk answer it runs after the
text was shown. In a thread it still holds the interpreter lock in slices, and every stream's
next event waits behind those slices. In a worker process it holds no lock of the server's;
the worker also runs at a lower CPU priority, so on a busy core the operating system serves the
server's requests first, and on a machine with more cores it uses another one.

The server talks to each worker over a socket pair that its own event loop reads and writes:
no helper thread in the server. (A ``ProcessPoolExecutor`` hands every call through a manager
thread and a queue-feeder thread, and each hand-over held the event loop while the woken
thread took the interpreter lock: a profile at 50 streams put 8% of the loop's time there.)
A message is a 4-byte big-endian length and a pickle: ``(id, text, sources, supported_at)``
one way, ``(id, verdicts or None, error message)`` back. Both ends are Docent's own processes.

A worker leaves when its socket closes, which happens when the server closes the pool or
dies, even by SIGKILL; it also watches its parent. A worker that dies fails the calls it had
(the caller grounds them in a thread) and is replaced at the next call.

High-risk validation stays in the server's threads: it stands between the question and the
first byte, and must not wait behind the low-priority worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from app.answer.grounding import SentenceGrounding, ground_sentences
from app.embeddings import Embedder, MemoEmbedder, build_embedder
from app.models import ChunkHit
from app.settings import Settings

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")


def _frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class WorkerDied(RuntimeError):
    """The worker process ended (or its socket closed, or it stopped answering) before it
    answered."""


DEADLINE_S = 30.0
"""How long a grounding call may wait for its worker (a fresh worker loads its model first;
grounding itself takes milliseconds). A worker that outlasts it is taken for hung: it is
killed and replaced, and its calls are grounded in a thread, so an answer's stream never
waits for ever on its grounding."""


class _Worker:
    """One worker process and the server's end of its socket."""

    def __init__(self, settings: Settings, nice: int) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.answer.grounding_pool", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.pending: dict[int, asyncio.Future[list[SentenceGrounding]]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dead = False
        self._inbox = bytearray()
        self._armed = False  # waiting for the socket to take the rest of the outbox
        # The first message: what the worker needs to build its embedder.
        self._outbox = bytearray(_frame((settings, nice, os.getpid())))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read (and write) on ``loop``. A worker used from an earlier loop that has ended
        (``asyncio.run`` per call, as tests do) moves over; that loop's calls are dropped."""
        if self.loop is loop:
            return
        if self.loop is not None:
            self._detach()
            self.pending.clear()
        self.loop = loop
        loop.add_reader(self.sock, self._readable)
        self._writable()

    def _detach(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.sock)
            with contextlib.suppress(Exception):
                self.loop.remove_writer(self.sock)
        self._armed = False

    def send(self, message: object) -> None:
        self._outbox += _frame(message)
        if not self._armed:
            self._writable()

    def _writable(self) -> None:
        """Write what the socket takes now; wait for it to drain only if it is full."""
        try:
            sent = self.sock.send(self._outbox) if self._outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.die(f"the grounding worker's socket failed: {exc}")
            return
        del self._outbox[:sent]
        assert self.loop is not None
        if self._outbox and not self._armed:
            self.loop.add_writer(self.sock, self._writable)
            self._armed = True
        elif not self._outbox and self._armed:
            self.loop.remove_writer(self.sock)
            self._armed = False

    def _readable(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.die(f"the grounding worker's socket failed: {exc}")
            return
        if not data:
            self.die("the grounding worker ended")
            return
        self._inbox += data
        while len(self._inbox) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._inbox)
            if len(self._inbox) < _HEADER.size + size:
                break
            body = bytes(self._inbox[_HEADER.size : _HEADER.size + size])
            del self._inbox[: _HEADER.size + size]
            call, verdicts, error = pickle.loads(body)
            future = self.pending.pop(call, None)
            if future is None or future.done():
                continue  # its caller left, or it belonged to an ended loop
            if error is not None:
                future.set_exception(RuntimeError(f"grounding failed in the worker: {error}"))
            else:
                future.set_result(verdicts)

    def release(self) -> None:
        """Stop using this worker: its socket closes, so the process leaves."""
        self.dead = True
        self._detach()
        self.sock.close()

    def die(self, why: str) -> None:
        """Stop using this worker; its calls fail (their callers ground in a thread)."""
        if self.dead:
            return
        self.release()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(WorkerDied(why))
        self.pending.clear()
        self.stop()

    def stop(self, wait_s: float = 0.0) -> None:
        """End the process (its socket is closed, so it is leaving anyway) and reap it."""
        if self.proc.poll() is None:
            if wait_s:
                try:
                    self.proc.wait(wait_s)
                    return
                except subprocess.TimeoutExpired:
                    pass
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(5)


class GroundingPool:
    """``workers`` processes, started on first use, each with its own copy of the embedder."""

    def __init__(
        self, settings: Settings, workers: int, nice: int = 10, deadline_s: float = DEADLINE_S
    ) -> None:
        self._settings, self._size, self._nice = settings, max(1, workers), nice
        self.deadline_s = deadline_s
        self._workers: list[_Worker] = []
        self._ids = itertools.count()

    def pids(self) -> list[int]:
        """The worker processes running now."""
        return [w.pid for w in self._workers if not w.dead]

    def _pick(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        for worker in [w for w in self._workers if w.dead]:
            self._workers.remove(worker)
        while len(self._workers) < self._size:
            self._workers.append(_Worker(self._settings, self._nice))
        worker = min(self._workers, key=lambda w: len(w.pending))
        worker.attach(loop)
        return worker

    async def ground(
        self, text: str, sources: list[ChunkHit], supported_at: float | None
    ) -> list[SentenceGrounding]:
        """Raises what the worker reported, or ``WorkerDied``; a dead worker is replaced at
        the next call, and so is one that has not answered within ``deadline_s``."""
        loop = asyncio.get_running_loop()
        worker = self._pick(loop)
        call = next(self._ids)
        future: asyncio.Future[list[SentenceGrounding]] = loop.create_future()
        worker.pending[call] = future
        try:
            worker.send((call, text, sources, supported_at))
            async with asyncio.timeout(self.deadline_s):
                return await future
        except TimeoutError:
            why = f"the grounding worker did not answer within {self.deadline_s:g} s"
            worker.die(why)
            raise WorkerDied(why) from None
        finally:
            worker.pending.pop(call, None)

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            if not worker.dead:
                worker.release()
        for worker in workers:
            worker.stop(wait_s=2.0)


# --- the worker process -----------------------------------------------------------------------


def _exit_with(parent: int) -> None:
    """A worker whose server died leaves too (its socket closing says so as well)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    parts = bytearray()
    while len(parts) < n:
        chunk = sock.recv(n - len(parts))
        if not chunk:
            return None
        parts += chunk
    return bytes(parts)


def _receive(sock: socket.socket) -> Any:
    header = _read_exactly(sock, _HEADER.size)
    if header is None:
        return None
    body = _read_exactly(sock, _HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def serve(sock: socket.socket) -> None:
    """The worker's loop: build the embedder, then ground what arrives until the socket ends."""
    first = _receive(sock)
    if first is None:
        return
    settings, nice, parent = first
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="exit-with").start()
    if nice and hasattr(os, "nice"):
        os.nice(nice)
    # One thread: grounding is background work, and a second thread on a busy machine takes
    # CPU from the server for a little less waiting.
    # Grounding embeds sentences as passages (float32): the 8-bit question copy is not loaded.
    only = {"embedding_threads": 1, "query_precision": "float32"}
    embedder: Embedder = MemoEmbedder(build_embedder(settings.model_copy(update=only)))
    while True:
        message = _receive(sock)
        if message is None:
            return
        call, text, sources, supported_at = message
        try:
            if supported_at is None:
                verdicts = ground_sentences(text, sources, embedder)
            else:
                verdicts = ground_sentences(text, sources, embedder, supported_at=supported_at)
            reply: tuple[Any, list[SentenceGrounding] | None, str | None] = (call, verdicts, None)
        except Exception as exc:
            log.exception("grounding failed")
            reply = (call, None, f"{type(exc).__name__}: {exc}")
        sock.sendall(_frame(reply))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    quiet = contextlib.suppress(BrokenPipeError, ConnectionResetError, KeyboardInterrupt)
    with socket.socket(fileno=int(sys.argv[1])) as channel, quiet:
        serve(channel)
