"""Ingestion as a SQL state machine: received -> parsed -> chunked -> indexed (or failed).

Read ``Ingestor.receive`` then ``Ingestor.run_job`` top to bottom. Every step is idempotent:
chunk ids are ``uuid5(tenant, document, version, n)``, so a job killed at any point is simply
run again from the status SQL recorded, and ``reconcile`` repairs what a crash left behind in
the index. Searches only return the version SQL calls live, so a new version replaces the old
one atomically at the moment its job commits ``indexed``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.orm import undefer

from app.crash import crashpoint
from app.db import Database
from app.db.tables import Chunk, Document, Job
from app.embeddings import Embedder
from app.errors import DocentError, InputError, NotFound
from app.index import IndexPoint, SparseVector, VectorIndex, scope
from app.models import JobStatus, UploadedFile
from app.settings import Settings
from ingest.catalog import document_and_latest_job
from ingest.chunk import ChunkDraft, chunk_id, split
from ingest.parse import CONTENT_TYPES, EXTENSIONS, ParsedText, parse_bytes

log = logging.getLogger(__name__)

PENDING = (JobStatus.received, JobStatus.parsed, JobStatus.chunked)
JOBS_PER_GROUP = 16
"""Jobs indexed together: their chunks share embedding batches."""

Progress = Callable[[str, int, int], None]
"""Called as (job_id, chunks_indexed, chunks_total) while a job runs."""


class SparseEncoder(Protocol):
    """What ingestion needs from the BM25 encoder (see app/index/sparse.py)."""

    def document(self, text: str) -> SparseVector: ...


@dataclass
class Ingestor:
    settings: Settings
    db: Database
    index: VectorIndex
    embedder: Embedder
    sparse: SparseEncoder

    def __post_init__(self) -> None:
        # Text parsed while validating an upload, handed to the worker so it is parsed once.
        self._parsed: dict[str, ParsedText] = {}

    # --- receive ----------------------------------------------------------------------

    def receive(self, tenant: str, collection: str, filename: str, data: bytes) -> UploadedFile:
        return self.receive_many(tenant, collection, [(filename, data)])[0]

    def receive_many(
        self, tenant: str, collection: str, files: list[tuple[str, bytes]]
    ) -> list[UploadedFile]:
        """Validate every file, then store and queue them. If any file is bad, an InputError
        naming it is raised before anything is kept."""
        checked = []
        for filename, data in files:
            name = _clean_filename(filename)
            kind, parsed = parse_bytes(name, data)
            checked.append((name, data, kind, parsed))
        return [self._accept(tenant, collection, *item) for item in checked]

    def reindex(self, tenant: str, document_id: str) -> UploadedFile:
        """Index a document again from its stored file, as a new version (after a change of
        embedder or chunking, or a failed job); the current version serves until it is done."""
        missing = "The stored copy of this document is missing; upload it again."
        with self.db.session() as s:
            doc, job = document_and_latest_job(s, tenant, document_id)
            if job is None:
                raise NotFound(missing)
            collection, filename = doc.collection, doc.filename
            stored = self.settings.files_dir / job.storage_path
        try:
            data = stored.read_bytes()
        except OSError as exc:
            raise NotFound(missing) from exc
        kind, parsed = parse_bytes(filename, data)
        return self._accept(tenant, collection, filename, data, kind, parsed, force=True)

    def _accept(
        self,
        tenant: str,
        collection: str,
        filename: str,
        data: bytes,
        kind: str,
        parsed: ParsedText,
        force: bool = False,
    ) -> UploadedFile:
        digest = hashlib.sha256(data).hexdigest()
        with self.db.session() as s:
            doc = s.scalars(
                select(Document).where(
                    Document.tenant == tenant,
                    Document.collection == collection,
                    Document.filename == filename,
                )
            ).one_or_none()
            if doc is not None:
                latest = s.scalars(
                    select(Job).where(Job.document_id == doc.id, Job.version == doc.latest_version)
                ).one()
                if not force and latest.sha256 == digest and latest.status != JobStatus.failed:
                    return UploadedFile(
                        filename=filename,
                        document_id=doc.id,
                        job_id=latest.id,
                        version=latest.version,
                        duplicate=True,
                    )
            else:
                doc = Document(
                    id=str(uuid.uuid4()),
                    tenant=tenant,
                    collection=collection,
                    filename=filename,
                    title=_title(filename),
                    content_type=CONTENT_TYPES[kind],
                    size_bytes=len(data),
                    sha256=digest,
                    live_version=0,
                    latest_version=0,
                    chunk_count=0,
                )
                s.add(doc)
            version = doc.latest_version + 1
            stored = self._store_file(doc.id, version, filename, data)
            try:
                job = Job(
                    id=str(uuid.uuid4()),
                    tenant=tenant,
                    document_id=doc.id,
                    version=version,
                    status=JobStatus.received,
                    filename=filename,
                    content_type=CONTENT_TYPES[kind],
                    size_bytes=len(data),
                    sha256=digest,
                    storage_path=str(stored.relative_to(self.settings.files_dir)),
                    chunks_total=0,
                    chunks_indexed=0,
                    attempts=0,
                )
                doc.latest_version = version
                s.add(job)
                s.flush()
            except Exception:
                stored.unlink(missing_ok=True)
                raise
        self._parsed[job.id] = parsed
        crashpoint("after_receive")
        return UploadedFile(
            filename=filename,
            document_id=doc.id,
            job_id=job.id,
            version=version,
            duplicate=False,
        )

    def _store_file(self, document_id: str, version: int, filename: str, data: bytes) -> Path:
        folder = self.settings.files_dir / document_id
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"v{version}{Path(filename).suffix.lower()}"
        tmp = final.with_suffix(final.suffix + ".part")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(final)
        return final

    # --- run ----------------------------------------------------------------------------

    def pending_jobs(self) -> list[str]:
        with self.db.session() as s:
            return list(
                s.scalars(select(Job.id).where(Job.status.in_(PENDING)).order_by(Job.created_at))
            )

    def run_pending(self, progress: Progress | None = None) -> int:
        jobs = self.pending_jobs()
        for i in range(0, len(jobs), JOBS_PER_GROUP):
            self.run_jobs(jobs[i : i + JOBS_PER_GROUP], progress)
        if jobs:
            self.index.optimize()
        return len(jobs)

    def run_job(self, job_id: str, progress: Progress | None = None) -> JobStatus:
        """Take a job from wherever it stopped to indexed (or failed)."""
        return self.run_jobs([job_id], progress).get(job_id, JobStatus.failed)

    def run_jobs(
        self, job_ids: list[str], progress: Progress | None = None
    ) -> dict[str, JobStatus]:
        """Parse and chunk the jobs, then index them together, so that many small documents
        share embedding batches (and transactions) instead of paying for their own."""
        results: dict[str, JobStatus] = {}
        ready: list[str] = []
        prepared = self._prepare(job_ids)
        for job_id in job_ids:
            if prepared.get(job_id) == JobStatus.chunked:
                ready.append(job_id)
            else:
                results[job_id] = prepared.get(job_id, JobStatus.failed)
        if ready:
            indexed: dict[str, JobStatus] = {}

            def index_ready() -> JobStatus:
                indexed.update(self._index(ready, progress))
                return JobStatus.indexed

            if self._guarded(ready, index_ready) == JobStatus.failed:
                indexed = dict.fromkeys(ready, JobStatus.failed)
            results.update(indexed)
        return results

    def _guarded(self, job_ids: list[str], step: Callable[[], JobStatus]) -> JobStatus:
        """Run a step; if it fails, its jobs fail with a reason a person can act on."""
        try:
            return step()
        except NotFound:
            return JobStatus.failed
        except Exception as exc:
            reason = failure_reason(exc, ", ".join(job_ids))
        finally:
            for job_id in job_ids:
                self._parsed.pop(job_id, None)
        for job_id in job_ids:
            self._fail(job_id, reason)
        return JobStatus.failed

    def _prepare(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """received -> parsed -> chunked for several jobs; each step is committed (one
        transaction for all of them) so a crash resumes after it."""
        status: dict[str, JobStatus] = {}
        texts: dict[str, ParsedText] = {}
        jobs: dict[str, tuple[str, str, int, str, str]] = {}
        with self.db.session() as s:
            for job in s.scalars(select(Job).where(Job.id.in_(job_ids))):
                status[job.id] = JobStatus(job.status)
                jobs[job.id] = (
                    job.tenant,
                    job.document_id,
                    job.version,
                    job.filename,
                    job.storage_path,
                )
                if job.status == JobStatus.received:
                    job.attempts += 1
            parsed_ids = [j for j, st in status.items() if st == JobStatus.parsed]
            for job in s.scalars(
                select(Job).where(Job.id.in_(parsed_ids)).options(undefer(Job.text))
            ):
                texts[job.id] = ParsedText(job.text or "", json.loads(job.page_starts or "[]"))

        failed: dict[str, str] = {}
        fresh: dict[str, ParsedText] = {}
        for job_id, st in status.items():
            if st != JobStatus.received:
                continue
            parsed = self._parsed.pop(job_id, None)
            try:
                if parsed is None:
                    filename, stored = jobs[job_id][3], jobs[job_id][4]
                    data = (self.settings.files_dir / stored).read_bytes()
                    _, parsed = parse_bytes(filename, data)
                fresh[job_id] = parsed
            except Exception as exc:
                failed[job_id] = failure_reason(exc, job_id)
        if fresh:
            with self.db.session() as s:
                for job_id, parsed in fresh.items():
                    s.execute(
                        update(Job)
                        .where(Job.id == job_id)
                        .values(
                            text=parsed.text,
                            page_starts=json.dumps(parsed.page_starts),
                            status=JobStatus.parsed,
                        )
                    )
                    status[job_id] = JobStatus.parsed
            texts.update(fresh)
            crashpoint("after_parsed")

        drafts: dict[str, list[ChunkDraft]] = {}
        for job_id, parsed in texts.items():
            try:
                drafts[job_id] = split(
                    parsed,
                    self.settings.chunk_tokens,
                    self.settings.chunk_overlap_tokens,
                    self.embedder.tokenizer(),
                )
            except Exception as exc:
                failed[job_id] = failure_reason(exc, job_id)
        if drafts:
            with self.db.session() as s:
                for job_id, chunks in drafts.items():
                    tenant, document_id, version = jobs[job_id][:3]
                    s.execute(
                        delete(Chunk).where(
                            Chunk.document_id == document_id, Chunk.version == version
                        )
                    )
                    s.add_all(_chunk_row(tenant, document_id, version, d) for d in chunks)
                    s.execute(
                        update(Job)
                        .where(Job.id == job_id)
                        .values(chunks_total=len(chunks), status=JobStatus.chunked)
                    )
                    status[job_id] = JobStatus.chunked
            crashpoint("after_chunked")
        for job_id, reason in failed.items():
            self._fail(job_id, reason)
            status[job_id] = JobStatus.failed
        return status

    def _index(self, job_ids: list[str], progress: Progress | None) -> dict[str, JobStatus]:
        """Embed and upsert the chunks of several chunked jobs, then make them live."""
        results: dict[str, JobStatus] = {}
        work = self._load_work(job_ids, results)

        # Points already indexed by an earlier, interrupted run are not embedded again.
        expected = {c.id: c.content_hash for w in work for c in w.chunks}
        present = {
            p.id
            for p in self.index.retrieve(list(expected))
            if p.payload.get("content_hash") == expected.get(p.id)
        }
        todo = [(w, c) for w in work for c in w.chunks if c.id not in present]
        # Unchanged chunks of the live version lend their vectors: never embed them twice.
        reusable = self._vectors_by_hash(
            [c for w in work for c in w.previous], {c.content_hash for _, c in todo}
        )
        done = {w.job_id: len(w.chunks) for w in work}
        for w, _ in todo:
            done[w.job_id] -= 1
        self._progress(work, done, progress)

        batch_size = max(1, self.settings.embedding_batch_size)
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            need = [c for _, c in batch if c.content_hash not in reusable]
            vectors = self.embedder.embed_documents([c.text for c in need])
            fresh = dict(zip((c.id for c in need), vectors, strict=True))
            self.index.upsert(
                [
                    IndexPoint(
                        id=c.id,
                        dense=fresh[c.id] if c.id in fresh else reusable[c.content_hash],
                        sparse=self.sparse.document(c.text),
                        payload={
                            **w.payload,
                            "n": c.n,
                            "page": c.page,
                            "start": c.start,
                            "end": c.end,
                            "text": c.text,
                            "content_hash": c.content_hash,
                        },
                    )
                    for w, c in batch
                ]
            )
            touched: dict[str, _Work] = {}
            for w, _ in batch:
                done[w.job_id] += 1
                touched[w.job_id] = w
            crashpoint("after_batch_upsert")
            self._progress(list(touched.values()), done, progress)

        self._go_live([w.job_id for w in work])
        crashpoint("after_live")
        for w in work:
            if w.replaces:
                self._drop_other_versions(w.tenant, w.document_id, w.version)
            results[w.job_id] = JobStatus.indexed
        return results

    def _load_work(self, job_ids: list[str], results: dict[str, JobStatus]) -> list[_Work]:
        work: list[_Work] = []
        with self.db.session() as s:
            for job in s.scalars(select(Job).where(Job.id.in_(job_ids)).order_by(Job.created_at)):
                doc = s.get(Document, job.document_id)
                if doc is None:
                    results[job.id] = JobStatus.failed  # deleted meanwhile: nothing to index
                    continue
                chunks = list(
                    s.scalars(
                        select(Chunk)
                        .where(Chunk.document_id == doc.id, Chunk.version == job.version)
                        .order_by(Chunk.n)
                    )
                )
                previous: list[Chunk] = []
                if doc.live_version and doc.live_version != job.version:
                    previous = list(
                        s.scalars(
                            select(Chunk).where(
                                Chunk.document_id == doc.id, Chunk.version == doc.live_version
                            )
                        )
                    )
                payload: dict[str, object] = {
                    "tenant": job.tenant,
                    "collection": doc.collection,
                    "document_id": doc.id,
                    "version": job.version,
                    "title": doc.title,
                }
                work.append(
                    _Work(
                        job.id,
                        job.tenant,
                        doc.id,
                        job.version,
                        payload,
                        chunks,
                        previous,
                        replaces=doc.live_version > 0 or job.version > 1,
                    )
                )
        return work

    def _vectors_by_hash(self, previous: list[Chunk], wanted: set[str]) -> dict[str, list[float]]:
        ids = [c.id for c in previous if c.content_hash in wanted]
        found: dict[str, list[float]] = {}
        for p in self.index.retrieve(ids, with_dense=True):
            h = p.payload.get("content_hash")
            if isinstance(h, str) and p.dense is not None:
                found[h] = p.dense
        return found

    def _progress(self, work: list[_Work], done: dict[str, int], progress: Progress | None) -> None:
        if not work:
            return
        with self.db.session() as s:
            for w in work:
                s.execute(
                    update(Job).where(Job.id == w.job_id).values(chunks_indexed=done[w.job_id])
                )
        if progress is not None:
            for w in work:
                progress(w.job_id, done[w.job_id], len(w.chunks))

    def _go_live(self, job_ids: list[str]) -> None:
        """One transaction makes the new versions the ones searches return."""
        with self.db.session() as s:
            for job in s.scalars(select(Job).where(Job.id.in_(job_ids))):
                doc = s.get(Document, job.document_id)
                if doc is None:
                    continue
                doc.live_version = job.version
                doc.sha256 = job.sha256
                doc.size_bytes = job.size_bytes
                doc.content_type = job.content_type
                doc.chunk_count = job.chunks_total
                starts = json.loads(job.page_starts or "[]")
                doc.pages = len(starts) or None
                job.status = JobStatus.indexed
                job.error = None

    def _drop_other_versions(
        self, tenant: str, document_id: str, live: int, keep: set[int] | None = None
    ) -> None:
        """Remove every version but the live one, ``keep`` and newer pending uploads from the
        index and SQL."""
        keep = (keep or set()) | {live}
        with self.db.session() as s:
            keep |= set(
                s.scalars(
                    select(Job.version).where(
                        Job.document_id == document_id, Job.status.in_(PENDING)
                    )
                )
            )
            old_jobs = list(
                s.scalars(
                    select(Job).where(Job.document_id == document_id, Job.version.not_in(keep))
                )
            )
        for old in old_jobs:
            self.index.delete(scope(tenant, document_id=document_id, version=old.version))
        with self.db.session() as s:
            s.execute(
                delete(Chunk).where(Chunk.document_id == document_id, Chunk.version.not_in(keep))
            )
            for old in old_jobs:
                (self.settings.files_dir / old.storage_path).unlink(missing_ok=True)
                job = s.get(Job, old.id)
                if job is not None:
                    job.text = None

    def _fail(self, job_id: str, reason: str) -> None:
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is not None:
                job.status = JobStatus.failed
                job.error = reason

    # --- delete and repair ----------------------------------------------------------------

    def delete_document(self, tenant: str, document_id: str) -> None:
        with self.db.session() as s:
            doc = s.get(Document, document_id)
            if doc is None or doc.tenant != tenant:
                raise NotFound("No such document. It may already have been deleted.")
        # Index first: a crash before the SQL delete leaves a document whose points
        # ``reconcile`` restores, never points without a document.
        self.index.delete(scope(tenant, document_id=document_id))
        crashpoint("after_delete_points")
        with self.db.session() as s:
            s.execute(delete(Chunk).where(Chunk.document_id == document_id))
            s.execute(delete(Job).where(Job.document_id == document_id))
            s.execute(delete(Document).where(Document.id == document_id))
        shutil.rmtree(self.settings.files_dir / document_id, ignore_errors=True)

    def reconcile(self) -> dict[str, int]:
        """After a crash: drop points, chunk rows and files of versions that are neither live
        nor pending, and re-index live versions whose points are missing."""
        fixed = {"dropped_versions": 0, "repaired_documents": 0, "orphan_files": 0}
        with self.db.session() as s:
            stored = set(s.scalars(select(Job.storage_path)))
            docs = s.execute(
                select(Document.id, Document.tenant, Document.live_version, Document.chunk_count)
            ).all()
            versions: dict[str, dict[int, str]] = {}
            for row in s.execute(select(Job.document_id, Job.version, Job.status)):
                versions.setdefault(row.document_id, {})[row.version] = row.status
            chunk_versions = {
                (row.document_id, row.version)
                for row in s.execute(select(Chunk.document_id, Chunk.version).distinct())
            }
        for doc_id, tenant, live, chunk_count in docs:
            known = versions.get(doc_id, {})
            keep = {live} | {v for v, status in known.items() if status in PENDING}
            stale = [
                v
                for v in known
                if v not in keep
                and (
                    (doc_id, v) in chunk_versions
                    or self.index.count(scope(tenant, document_id=doc_id, version=v)) > 0
                )
            ]
            if stale and live:
                self._drop_other_versions(tenant, doc_id, live, keep)
                fixed["dropped_versions"] += len(stale)
            if live and self.index.count(scope(tenant, document_id=doc_id, version=live)) != (
                chunk_count
            ):
                self._repair_live(tenant, doc_id, live)
                fixed["repaired_documents"] += 1
        fixed["orphan_files"] = self._remove_orphan_files(stored)
        return fixed

    def _remove_orphan_files(self, stored: set[str]) -> int:
        """Files a crash left between writing an upload and committing its job."""
        removed = 0
        root = self.settings.files_dir
        if not root.is_dir():
            return 0
        for path in root.rglob("*"):
            if path.is_file() and str(path.relative_to(root)) not in stored:
                path.unlink(missing_ok=True)
                removed += 1
        for folder in root.iterdir():
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return removed

    def _repair_live(self, tenant: str, document_id: str, live: int) -> None:
        with self.db.session() as s:
            job = s.scalars(
                select(Job).where(Job.document_id == document_id, Job.version == live)
            ).one()
            job.status = JobStatus.chunked
            job_id = job.id
        self._index([job_id], None)


@dataclass
class _Work:
    """One job's share of an indexing pass."""

    job_id: str
    tenant: str
    document_id: str
    version: int
    payload: dict[str, object]
    chunks: list[Chunk]
    previous: list[Chunk]
    replaces: bool


def failure_reason(exc: BaseException, job: str) -> str:
    """What a person reads when a job fails; unexpected errors also go to the log."""
    if not isinstance(exc, DocentError):
        log.error("ingestion job %s failed", job, exc_info=exc)
    if isinstance(exc, InputError):
        return exc.message
    if isinstance(exc, DocentError):
        return f"Indexing stopped: {exc.message} Re-upload the file to retry."
    return (
        f"Indexing stopped by an internal error ({type(exc).__name__}). "
        "Re-upload the file to retry; if it keeps failing, report it with the server log."
    )


def _chunk_row(tenant: str, document_id: str, version: int, d: ChunkDraft) -> Chunk:
    return Chunk(
        id=chunk_id(tenant, document_id, version, d.n),
        tenant=tenant,
        document_id=document_id,
        version=version,
        n=d.n,
        start=d.start,
        end=d.end,
        page=d.page,
        content_hash=d.content_hash,
        text=d.text,
    )


def _clean_filename(name: str) -> str:
    """Keep only the last path component; the stored file never uses this name."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(ch for ch in base if ch.isprintable())
    if not base or base in (".", ".."):
        raise InputError("The file has no name. Give it a name ending in its type, like .pdf.")
    if base.lower() in EXTENSIONS:  # only a type is left, e.g. of "…/.txt": name the file
        base = "untitled" + base
    return base[:255]


def _title(filename: str) -> str:
    stem = Path(filename).stem.replace("_", " ").replace("-", " ").strip()
    return stem or filename
