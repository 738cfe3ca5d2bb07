"""Shared fixtures: settings pointing at a temporary data directory, the hash embedder
(fast, deterministic) unless a test asks for the real model, and an app with its client."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The exported ONNX model is cached across test runs (and shared with the servers tests start).
MODEL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "models"
os.environ.setdefault("DOCENT_MODEL_CACHE", str(MODEL_CACHE))

from app.settings import Settings  # noqa: E402


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "embedder": "hash",
        "ingest_own_docs": False,
        "answer_min_similarity": 0.2,
        # Grounding in a worker process has its own test (test_answer.py); elsewhere a
        # thread saves each test a process start.
        "grounding_workers": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module", autouse=True)
def _earlier_heap_frozen() -> Iterator[None]:
    """While a module runs, what earlier modules left on the heap is kept out of the garbage
    collector, as ``docent serve`` keeps its start-up heap out (app/cli.py). Otherwise a full
    collection walks the whole suite's heap: measured at 0.6-0.7 s here, with every thread
    stopped, which a test with sub-second provider deadlines takes for a provider that did
    not answer in time. The garbage earlier modules left is collected first, once."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def client(settings: Settings) -> Iterator[object]:
    from litestar.testing import TestClient

    from app.web.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


def wait_for_job(client: object, job_id: str, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()  # type: ignore[attr-defined]
        if job["status"] in ("indexed", "failed") or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)


@pytest.fixture(scope="session")
def minilm() -> object:
    """The real embedding model, loaded once per test session."""
    from app import minilm

    return minilm.load("onnx", MODEL_CACHE)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    def __init__(self, url: str, data_dir: Path, env: dict[str, str]) -> None:
        self.url = url
        self.data_dir = data_dir
        self.env = env


@contextmanager
def docent_serve(data_dir: Path, env: dict[str, str], timeout: float = 120) -> Iterator[str]:
    """`docent serve` in a subprocess with ``env``, until it answers /health; its URL. The
    server log is kept beside the data directory and quoted if it does not start."""
    import subprocess
    import sys

    import httpx

    log_path = data_dir.parent / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"], env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{env['DOCENT_PORT']}"
        deadline = time.monotonic() + timeout
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited: {log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def serve_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a `docent serve` subprocess: this one's, a data directory, a free
    port, and ``settings`` as DOCENT_<NAME> variables (embedder="hash" -> DOCENT_EMBEDDER)."""
    return {
        **os.environ,
        "DOCENT_DATA_DIR": str(data_dir),
        "DOCENT_PORT": str(free_port()),
        **{f"DOCENT_{name.upper()}": value for name, value in settings.items()},
    }


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`docent serve` in a subprocess on 127.0.0.1 with the real embedding model, on a fresh
    data directory, so first-run ingestion of Docent's own docs happens too."""
    data_dir = tmp_path_factory.mktemp("live") / "data"
    env = serve_env(data_dir, embedder="minilm", ingest_own_docs="true")
    with docent_serve(data_dir, env) as url:
        yield LiveServer(url, data_dir, env)


def wait_until_idle(url: str, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/health", timeout=5).json()["pending_jobs"] > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("ingestion did not finish")
        time.sleep(0.3)
