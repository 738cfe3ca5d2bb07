"""The ingestion state machine: versions, hashes, atomic replacement, delete, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db.tables import Chunk, Document, Job
from app.embeddings import HashEmbedder
from app.index import scope
from app.models import JobStatus
from app.services import Services
from app.settings import Settings
from ingest.chunk import chunk_id
from tests.conftest import make_settings

TENANT = "default"


def long_text(topic: str, paragraphs: int = 40) -> str:
    return "\n\n".join(
        f"Paragraph {i} about {topic}. The {topic} rule number {i} says that item {i * 7} "
        f"must be reviewed by team {i % 5} before day {i + 3}. Exceptions need approval."
        for i in range(paragraphs)
    )


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:  # type: ignore[override]
        self.embedded.extend(texts)
        return super().embed_documents(texts)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.build(
        make_settings(
            tmp_path / "data", chunk_tokens=60, chunk_overlap_tokens=10, embedding_batch_size=4
        ),
        embedder=CountingEmbedder(),
    )
    yield s
    s.close()


def point_ids(s: Services, document_id: str) -> set[str]:
    return s.index.ids(scope(TENANT, document_id=document_id))


def expected_ids(s: Services, document_id: str) -> set[str]:
    with s.db.session() as session:
        doc = session.get(Document, document_id)
        assert doc is not None
        return {chunk_id(TENANT, document_id, doc.live_version, n) for n in range(doc.chunk_count)}


def test_status_moves_through_the_states(services: Services) -> None:
    seen: list[str] = []
    result = services.ingestor.receive(TENANT, "default", "rules.txt", long_text("travel").encode())
    with services.db.session() as s:
        seen.append(s.get(Job, result.job_id).status)  # type: ignore[union-attr]
    original = services.ingestor._index

    def spy(job_ids: list[str], progress: object) -> dict[str, JobStatus]:
        with services.db.session() as s:
            seen.extend(s.get(Job, j).status for j in job_ids)  # type: ignore[union-attr]
        return original(job_ids, progress)  # type: ignore[arg-type]

    services.ingestor._index = spy  # type: ignore[method-assign]
    assert services.ingestor.run_job(result.job_id) == JobStatus.indexed
    assert seen == ["received", "chunked"]
    ids = point_ids(services, result.document_id)
    assert ids == expected_ids(services, result.document_id) and len(ids) > 5


def test_unchanged_chunks_are_not_embedded_again(services: Services) -> None:
    embedder = services.embedder
    assert isinstance(embedder, CountingEmbedder)
    text = long_text("security")
    first = services.ingestor.receive(TENANT, "default", "sec.txt", text.encode())
    services.ingestor.run_pending()
    total = len(embedder.embedded)
    embedder.embedded.clear()

    changed = text + "\n\nA new closing paragraph about badges and visitor passes."
    second = services.ingestor.receive(TENANT, "default", "sec.txt", changed.encode())
    assert second.document_id == first.document_id and second.version == 2
    services.ingestor.run_pending()
    # Only chunks whose text changed (the tail) are embedded; the rest reuse their vectors.
    assert 0 < len(embedder.embedded) <= 3 < total
    assert point_ids(services, first.document_id) == expected_ids(services, first.document_id)
    assert services.index.count(scope(TENANT, document_id=first.document_id, version=1)) == 0


def test_search_never_mixes_versions(services: Services) -> None:
    v1 = services.ingestor.receive(TENANT, "default", "menu.txt", b"Lunch is served at noon daily.")
    services.ingestor.run_pending()
    services.ingestor.receive(TENANT, "default", "menu.txt", b"Lunch is served at one daily.")
    seen_during_swap: list[list[int]] = []
    go_live = services.ingestor._go_live

    def check_then_go_live(job_ids: list[str]) -> None:
        # v2's points are in the index now, yet searches still see only v1.
        assert services.index.count(scope(TENANT, document_id=v1.document_id, version=2)) == 1
        hits = services.retriever.search(TENANT, "lunch served", 10)
        seen_during_swap.append([h.version for h in hits])
        go_live(job_ids)

    services.ingestor._go_live = check_then_go_live  # type: ignore[method-assign]
    services.ingestor.run_pending()
    assert seen_during_swap == [[1]]
    assert [h.version for h in services.retriever.search(TENANT, "lunch served", 10)] == [2]


def test_failed_job_keeps_a_readable_reason(services: Services) -> None:
    result = services.ingestor.receive(TENANT, "default", "a.txt", b"Some text to index here.")
    (services.settings.files_dir / result.document_id / "v1.txt").unlink()
    services.ingestor._parsed.clear()  # as after a restart: the file must be read again
    assert services.ingestor.run_job(result.job_id) == JobStatus.failed
    with services.db.session() as s:
        job = s.get(Job, result.job_id)
        assert job is not None and job.status == "failed"
        assert job.error and "Re-upload" in job.error


def test_tenants_are_isolated(services: Services) -> None:
    services.ingestor.receive("acme", "default", "a.txt", b"The acme launch code is purple.")
    services.ingestor.receive("globex", "default", "g.txt", b"The globex launch code is green.")
    services.ingestor.run_pending()
    for mode in ("hybrid", "dense", "sparse"):
        hits = services.retriever.search("acme", "globex launch code green", 10, mode=mode)
        assert hits and all("acme" in h.text for h in hits)


# --- crashes -------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from app.embeddings import HashEmbedder
    from app.services import Services
    from tests.conftest import make_settings
    data_dir, name, text_path = sys.argv[1], sys.argv[2], sys.argv[3]
    s = Services.build(
        make_settings(Path(data_dir), chunk_tokens=60, chunk_overlap_tokens=10,
                      embedding_batch_size=4),
        embedder=HashEmbedder(),
    )
    s.recover()
    s.ingestor.receive("default", "default", name, Path(text_path).read_bytes())
    s.ingestor.run_pending()
    s.close()
    """
)


def run_child(data_dir: Path, name: str, text: str, crash_at: str | None) -> int:
    text_path = data_dir.parent / f"{name}.src"
    text_path.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env.pop("DOCENT_CRASH_AT", None)
    if crash_at:
        env["DOCENT_CRASH_AT"] = crash_at
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), name, str(text_path)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    return proc.returncode


def assert_consistent(data_dir: Path) -> None:
    """Invariants after restart and recovery: every document indexed, its points exactly
    uuid5(tenant, doc, version, n) for n < chunk_count, no other versions, no duplicates."""
    settings: Settings = make_settings(data_dir, chunk_tokens=60, chunk_overlap_tokens=10)
    s = Services.build(settings, embedder=HashEmbedder())
    try:
        s.recover()
        with s.db.session() as session:
            docs = list(session.scalars(select(Document)))
            statuses = set(session.scalars(select(Job.status).where(Job.version > 0)))
            assert session.scalar(select(func.count()).select_from(Chunk)) == sum(
                d.chunk_count for d in docs
            )
        assert docs, "the upload that was acknowledged must survive"
        assert statuses == {"indexed"}
        for doc in docs:
            ids = point_ids(s, doc.id)
            assert ids == expected_ids(s, doc.id)
            assert s.index.count(scope(TENANT, document_id=doc.id)) == len(ids)
            hits = s.retriever.search(TENANT, "rule number reviewed by team", 50)
            assert all(h.version == doc.live_version for h in hits if h.document_id == doc.id)
        integrity = s.db.engine.connect().exec_driver_sql("PRAGMA integrity_check").scalar()
        assert integrity == "ok"
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash_at",
    ["after_receive", "after_parsed", "after_chunked", "after_batch_upsert:3", "after_live"],
)
def test_crash_during_first_ingestion_resumes(tmp_path: Path, crash_at: str) -> None:
    data_dir = tmp_path / "data"
    assert run_child(data_dir, "rules.txt", long_text("audit"), crash_at) == -signal.SIGKILL
    assert_consistent(data_dir)


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["after_batch_upsert:2", "after_live"])
def test_crash_while_replacing_a_version_resumes(tmp_path: Path, crash_at: str) -> None:
    data_dir = tmp_path / "data"
    assert run_child(data_dir, "rules.txt", long_text("audit"), None) == 0
    changed = long_text("audit").replace("Exceptions", "Waivers")
    assert run_child(data_dir, "rules.txt", changed, crash_at) == -signal.SIGKILL
    assert_consistent(data_dir)
    s = Services.build(make_settings(data_dir), embedder=HashEmbedder())
    try:
        with s.db.session() as session:
            doc = session.scalars(select(Document)).one()
            assert doc.live_version == 2
    finally:
        s.close()


@pytest.mark.slow
def test_crash_during_delete_leaves_no_orphans(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert run_child(data_dir, "rules.txt", long_text("audit"), None) == 0
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from sqlalchemy import select
        from app.db.tables import Document
        from app.embeddings import HashEmbedder
        from app.services import Services
        from tests.conftest import make_settings
        s = Services.build(make_settings(Path(sys.argv[1])), embedder=HashEmbedder())
        with s.db.session() as session:
            doc_id = session.scalars(select(Document.id)).one()
        s.ingestor.delete_document("default", doc_id)
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "DOCENT_CRASH_AT": "after_delete_points",
    }
    proc = subprocess.run([sys.executable, "-c", script, str(data_dir)], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    # The document survives the interrupted delete, and recovery restores its points.
    assert_consistent(data_dir)


@pytest.mark.slow
def test_random_kills_during_cli_ingest(tmp_path: Path) -> None:
    """Kill `docent ingest` at staggered moments, restart it, check the invariants."""
    import random
    import time

    rng = random.Random(7)
    data_dir = tmp_path / "data"
    src = tmp_path / "docs"
    src.mkdir()
    for i in range(3):
        (src / f"doc{i}.txt").write_text(long_text(f"topic{i}", 60))
    env = {
        **os.environ,
        "DOCENT_DATA_DIR": str(data_dir),
        "DOCENT_EMBEDDER": "hash",
        "DOCENT_CHUNK_TOKENS": "60",
        "DOCENT_CHUNK_OVERLAP_TOKENS": "10",
        "DOCENT_EMBEDDING_BATCH_SIZE": "2",
        "DOCENT_INGEST_OWN_DOCS": "false",
    }
    docent = [sys.executable, "-m", "app.cli"]
    for _ in range(3):
        proc = subprocess.Popen(
            [*docent, "ingest", str(src)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(1.0, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done = subprocess.run([*docent, "ingest", str(src)], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert_consistent(data_dir)


def test_reconcile_removes_files_no_job_refers_to(services: Services) -> None:
    kept = services.ingestor.receive(TENANT, "default", "a.txt", b"Text that stays indexed here.")
    services.ingestor.run_pending()
    files = services.settings.files_dir
    (files / "0d9e-orphan").mkdir()
    (files / "0d9e-orphan" / "v1.pdf").write_bytes(b"%PDF-1.7 left by a crash")
    (files / kept.document_id / "v2.txt.part").write_bytes(b"half written")
    fixed = services.ingestor.reconcile()
    assert fixed["orphan_files"] == 2
    assert sorted(p.name for p in files.rglob("*")) == [kept.document_id, "v1.txt"]


def test_a_different_embedder_is_refused_until_the_index_is_rebuilt(tmp_path: Path) -> None:
    import shutil

    from app.errors import Unavailable

    settings = make_settings(tmp_path / "data")
    s = Services.build(settings, embedder=HashEmbedder())
    doc = s.ingestor.receive(TENANT, "default", "a.txt", b"Zebras migrate across the plains.")
    s.ingestor.run_pending()
    s.close()

    with pytest.raises(Unavailable, match="re-embedded from the database"):
        Services.build(settings, embedder=HashEmbedder(dimensions=128))

    shutil.rmtree(settings.shard_dir)
    (settings.data_dir / "embedder.json").unlink()
    s = Services.build(settings, embedder=HashEmbedder(dimensions=128))
    try:
        s.recover()
        assert point_ids(s, doc.document_id) == expected_ids(s, doc.document_id)
        hits = s.retriever.search(TENANT, "zebras migrate", 3)
        assert hits and hits[0].document_id == doc.document_id
    finally:
        s.close()
