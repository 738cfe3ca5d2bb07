"""Reading the document catalogue: what the API and the CLI show about documents and jobs.
Every lookup is scoped by tenant; another tenant's id is as unknown as a missing one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from app.db import Database
from app.db.tables import Chunk, Document, Job
from app.errors import NotFound
from app.models import DocumentInfo, JobInfo, JobStatus, PassageInContext


def _document_info(doc: Document, job: Job | None) -> DocumentInfo:
    return DocumentInfo(
        id=doc.id,
        tenant=doc.tenant,
        collection=doc.collection,
        title=doc.title,
        filename=doc.filename,
        content_type=doc.content_type,
        size_bytes=doc.size_bytes,
        sha256=doc.sha256,
        version=doc.live_version,
        status=JobStatus(job.status) if job else JobStatus.received,
        error=job.error if job else None,
        chunk_count=doc.chunk_count,
        pages=doc.pages,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
    )


def list_documents(db: Database, tenant: str, collection: str | None = None) -> list[DocumentInfo]:
    """Newest first, each with the status of its latest version's job."""
    with db.session() as s:
        query = select(Document).where(Document.tenant == tenant)
        if collection:
            query = query.where(Document.collection == collection)
        docs = list(s.scalars(query.order_by(Document.created_at.desc())))
        jobs = {
            (j.document_id, j.version): j
            for j in s.scalars(select(Job).where(Job.document_id.in_([d.id for d in docs])))
        }
        return [_document_info(d, jobs.get((d.id, d.latest_version))) for d in docs]


def document_and_latest_job(
    s: Session, tenant: str, document_id: str
) -> tuple[Document, Job | None]:
    """The tenant's document and the job of its latest version; NotFound for another
    tenant's document or a deleted one."""
    doc = s.get(Document, document_id)
    if doc is None or doc.tenant != tenant:
        raise NotFound("No such document. It may have been deleted.")
    job = s.scalars(
        select(Job).where(Job.document_id == doc.id, Job.version == doc.latest_version)
    ).one_or_none()
    return doc, job


def get_document(db: Database, tenant: str, document_id: str) -> DocumentInfo:
    with db.session() as s:
        return _document_info(*document_and_latest_job(s, tenant, document_id))


def get_job(db: Database, tenant: str, job_id: str) -> JobInfo:
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.tenant != tenant:
            raise NotFound("No such ingestion job.")
        return JobInfo(
            id=job.id,
            document_id=job.document_id,
            version=job.version,
            status=JobStatus(job.status),
            error=job.error,
            chunks_total=job.chunks_total,
            chunks_indexed=job.chunks_indexed,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


def passage_in_context(
    db: Database, tenant: str, chunk_id: str, around: int = 600
) -> PassageInContext:
    """A chunk with up to ``around`` characters of its document's text on each side (cut at a
    word), from the version the chunk belongs to."""
    with db.session() as s:
        chunk = s.get(Chunk, chunk_id)
        if chunk is None or chunk.tenant != tenant:
            raise NotFound("No such passage. Its document may have been deleted or re-indexed.")
        doc = s.get(Document, chunk.document_id)
        job = s.scalars(
            select(Job)
            .where(Job.document_id == chunk.document_id, Job.version == chunk.version)
            .options(undefer(Job.text))
        ).one_or_none()
        if doc is None:
            raise NotFound("No such passage. Its document may have been deleted.")
        text = job.text if job is not None and job.text else None
        if text is not None and text[chunk.start : chunk.end].strip():
            lo, hi = max(0, chunk.start - around), min(len(text), chunk.end + around)
            before, passage, after = (
                text[lo : chunk.start],
                text[chunk.start : chunk.end],
                text[chunk.end : hi],
            )
            if lo > 0:
                before = "…" + before.split(" ", 1)[-1]
            if hi < len(text):
                after = after.rsplit(" ", 1)[0] + "…"
        else:  # the text of that version is gone: the chunk alone
            before, passage, after = "", chunk.text, ""
        return PassageInContext(
            chunk_id=chunk.id,
            document_id=doc.id,
            title=doc.title,
            filename=doc.filename,
            version=chunk.version,
            page=chunk.page,
            start=chunk.start,
            end=chunk.end,
            before=before,
            passage=passage,
            after=after,
        )
