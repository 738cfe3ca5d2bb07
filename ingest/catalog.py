"""Reading the document catalogue: what the API and the CLI show about documents and jobs.
Every lookup is scoped by tenant; another tenant's id is as unknown as a missing one."""

from __future__ import annotations

from sqlalchemy import select

from app.db import Database
from app.db.tables import Document, Job
from app.errors import NotFound
from app.models import DocumentInfo, JobInfo, JobStatus


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


def get_document(db: Database, tenant: str, document_id: str) -> DocumentInfo:
    with db.session() as s:
        doc = s.get(Document, document_id)
        if doc is None or doc.tenant != tenant:
            raise NotFound("No such document. It may have been deleted.")
        job = s.scalars(
            select(Job).where(Job.document_id == doc.id, Job.version == doc.latest_version)
        ).one_or_none()
        return _document_info(doc, job)


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
