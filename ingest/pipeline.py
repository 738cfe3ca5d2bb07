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

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.crash import crashpoint
from app.db import Database
from app.db.tables import Chunk, Document, Job
from app.embeddings import Embedder
from app.errors import DocentError, InputError, NotFound
from app.index import IndexPoint, SparseVector, VectorIndex, scope
from app.models import JobStatus, UploadedFile
from app.settings import Settings
from ingest.chunk import ChunkDraft, chunk_id, split
from ingest.parse import CONTENT_TYPES, ParsedText, parse_bytes

log = logging.getLogger(__name__)

PENDING = (JobStatus.received, JobStatus.parsed, JobStatus.chunked)

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

    def _accept(
        self,
        tenant: str,
        collection: str,
        filename: str,
        data: bytes,
        kind: str,
        parsed: ParsedText,
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
                if latest.sha256 == digest and latest.status != JobStatus.failed:
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
        done = 0
        for job_id in self.pending_jobs():
            self.run_job(job_id, progress)
            done += 1
        if done:
            self.index.optimize()
        return done

    def run_job(self, job_id: str, progress: Progress | None = None) -> JobStatus:
        """Take a job from wherever it stopped to indexed (or failed)."""
        try:
            status = self._status(job_id)
            if status == JobStatus.received:
                status = self._parse(job_id)
            if status == JobStatus.parsed:
                status = self._chunk(job_id)
            if status == JobStatus.chunked:
                status = self._index(job_id, progress)
            return status
        except NotFound:
            return JobStatus.failed
        except InputError as exc:
            self._fail(job_id, exc.message)
        except DocentError as exc:
            self._fail(job_id, f"Indexing stopped: {exc.message} Re-upload the file to retry.")
        except Exception as exc:
            log.exception("ingestion job %s failed", job_id)
            self._fail(
                job_id,
                f"Indexing stopped by an internal error ({type(exc).__name__}). "
                "Re-upload the file to retry; if it keeps failing, report it with the server log.",
            )
        finally:
            self._parsed.pop(job_id, None)
        return JobStatus.failed

    def _status(self, job_id: str) -> JobStatus:
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFound("This ingestion job no longer exists.")
            return JobStatus(job.status)

    def _parse(self, job_id: str) -> JobStatus:
        with self.db.session() as s:
            job = _get(s, job_id)
            job.attempts += 1
            path = self.settings.files_dir / job.storage_path
            filename = job.filename
        parsed = self._parsed.pop(job_id, None)
        if parsed is None:
            _, parsed = parse_bytes(filename, path.read_bytes())
        with self.db.session() as s:
            job = _get(s, job_id)
            job.text = parsed.text
            job.page_starts = json.dumps(parsed.page_starts)
            job.status = JobStatus.parsed
        crashpoint("after_parsed")
        return JobStatus.parsed

    def _chunk(self, job_id: str) -> JobStatus:
        with self.db.session() as s:
            job = _get(s, job_id)
            parsed = ParsedText(job.text or "", json.loads(job.page_starts or "[]"))
            tenant, document_id, version = job.tenant, job.document_id, job.version
        drafts = split(
            parsed,
            self.settings.chunk_tokens,
            self.settings.chunk_overlap_tokens,
            self.embedder.tokenizer(),
        )
        with self.db.session() as s:
            job = _get(s, job_id)
            s.execute(
                delete(Chunk).where(Chunk.document_id == document_id, Chunk.version == version)
            )
            s.add_all(_chunk_row(tenant, document_id, version, d) for d in drafts)
            job.chunks_total = len(drafts)
            job.status = JobStatus.chunked
        crashpoint("after_chunked")
        return JobStatus.chunked

    def _index(self, job_id: str, progress: Progress | None) -> JobStatus:
        with self.db.session() as s:
            job = _get(s, job_id)
            doc = s.get(Document, job.document_id)
            if doc is None:
                raise NotFound("The document was deleted while it was being indexed.")
            chunks = list(
                s.scalars(
                    select(Chunk)
                    .where(Chunk.document_id == job.document_id, Chunk.version == job.version)
                    .order_by(Chunk.n)
                )
            )
            previous = (
                list(
                    s.scalars(
                        select(Chunk).where(
                            Chunk.document_id == doc.id, Chunk.version == doc.live_version
                        )
                    )
                )
                if doc.live_version
                else []
            )
            tenant, collection, title = job.tenant, doc.collection, doc.title
            document_id, version = doc.id, job.version
        total = len(chunks)

        # Points of this version already indexed by an earlier, interrupted run.
        expected = {c.id: c.content_hash for c in chunks}
        present = {
            p.id
            for p in self.index.retrieve(list(expected))
            if p.payload.get("content_hash") == expected.get(p.id)
        }
        todo = [c for c in chunks if c.id not in present]
        # Unchanged chunks of the live version lend their vectors: never embed them twice.
        reusable = self._vectors_by_hash(previous, {c.content_hash for c in todo})

        done = total - len(todo)
        self._progress(job_id, done, total, progress)
        batch_size = max(1, self.settings.embedding_batch_size)
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            need = [c for c in batch if c.content_hash not in reusable]
            fresh = dict(
                zip(
                    (c.id for c in need),
                    self.embedder.embed_documents([c.text for c in need]),
                    strict=True,
                )
            )
            points = [
                IndexPoint(
                    id=c.id,
                    dense=fresh[c.id] if c.id in fresh else reusable[c.content_hash],
                    sparse=self.sparse.document(c.text),
                    payload={
                        "tenant": tenant,
                        "collection": collection,
                        "document_id": document_id,
                        "version": version,
                        "n": c.n,
                        "page": c.page,
                        "start": c.start,
                        "end": c.end,
                        "text": c.text,
                        "title": title,
                        "content_hash": c.content_hash,
                    },
                )
                for c in batch
            ]
            self.index.upsert(points)
            done += len(batch)
            crashpoint("after_batch_upsert")
            self._progress(job_id, done, total, progress)

        self._go_live(job_id)
        crashpoint("after_live")
        self._drop_other_versions(tenant, document_id, version)
        return JobStatus.indexed

    def _vectors_by_hash(self, previous: list[Chunk], wanted: set[str]) -> dict[str, list[float]]:
        ids = [c.id for c in previous if c.content_hash in wanted]
        found: dict[str, list[float]] = {}
        for p in self.index.retrieve(ids, with_dense=True):
            h = p.payload.get("content_hash")
            if isinstance(h, str) and p.dense is not None:
                found[h] = p.dense
        return found

    def _progress(self, job_id: str, done: int, total: int, progress: Progress | None) -> None:
        with self.db.session() as s:
            job = _get(s, job_id)
            job.chunks_indexed = done
        if progress is not None:
            progress(job_id, done, total)

    def _go_live(self, job_id: str) -> None:
        """One transaction makes the new version the one searches return."""
        with self.db.session() as s:
            job = _get(s, job_id)
            doc = s.get(Document, job.document_id)
            if doc is None:
                raise NotFound("The document was deleted while it was being indexed.")
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
        self._index(job_id, None)


def _get(s: Session, job_id: str) -> Job:
    job = s.get(Job, job_id)
    if job is None:
        raise NotFound("This ingestion job no longer exists.")
    return job


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
    return base[:255]


def _title(filename: str) -> str:
    stem = Path(filename).stem.replace("_", " ").replace("-", " ").strip()
    return stem or filename
