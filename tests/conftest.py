"""Shared fixtures: settings pointing at a temporary data directory, the hash embedder
(fast, deterministic) unless a test asks for the real model, and an app with its client."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from app.settings import Settings


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "embedder": "hash",
        "ingest_own_docs": False,
        "answer_min_similarity": 0.2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


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
    from app.embeddings import MiniLMEmbedder

    return MiniLMEmbedder()
