"""The Litestar application, built in one function from settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import ResponseHeader
from litestar.exceptions import HTTPException, NotFoundException
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.answer import metrics
from app.errors import DocentError
from app.services import Services, ingest_own_docs_once
from app.settings import Settings
from app.web.api import (
    ConversationController,
    DocumentController,
    ReviewController,
    SearchController,
    answer_metrics,
    health,
)
from app.web.auth import AuthMiddleware, admin_only, login, login_page, logout, principal_of
from app.web.charts import CHARTS
from app.web.errors import docent_error, http_error, unexpected_error
from app.web.openai_compat import OpenAICompatController
from ingest.worker import BackgroundWorker

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def frontend_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    bundled = here / "_bundled" / "frontend"
    return bundled if bundled.is_dir() else here.parent / "frontend"


def page_context(request: Request[Any, Any, Any], page: str) -> dict[str, Any]:
    """What every page's header needs: who is signed in, and the token for their requests."""
    who = principal_of(request)
    return {"page": page, "who": who, "csrf": (who.csrf_token if who else None) or ""}


@get("/", include_in_schema=False)
async def chat_page(request: Request[Any, Any, Any]) -> Template:
    return Template("chat.html", context=page_context(request, "chat"))


@get("/upload", include_in_schema=False, guards=[admin_only])
async def upload_page(request: Request[Any, Any, Any]) -> Template:
    return Template("upload.html", context=page_context(request, "upload"))


@get("/console", include_in_schema=False, guards=[admin_only])
async def dashboard_page(request: Request[Any, Any, Any]) -> Template:
    context = page_context(request, "dashboard")
    return Template("dashboard.html", context={**context, "charts": CHARTS})


@get(
    "/console/charts/{name:str}",
    include_in_schema=False,
    guards=[admin_only],
    sync_to_thread=True,
    # An SVG shown as an image runs no script; matplotlib styles its shapes inline.
    response_headers=[
        ResponseHeader(
            name="Content-Security-Policy", value="default-src 'none'; style-src 'unsafe-inline'"
        )
    ],
)
def chart(request: Request[Any, Any, Any], name: str, days: int = 14) -> Response[bytes]:
    if name not in CHARTS:
        raise NotFoundException("No such chart.")
    services: Services = request.app.state.services
    figures = metrics.dashboard(services.db, services.settings.default_tenant, min(days, 365))
    return Response(
        CHARTS[name][1](figures),
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-store"},
    )


@get("/console/playground", include_in_schema=False, guards=[admin_only])
async def playground_page(request: Request[Any, Any, Any]) -> Template:
    return Template("playground.html", context=page_context(request, "playground"))


@get("/console/review", include_in_schema=False, guards=[admin_only])
async def review_page(request: Request[Any, Any, Any]) -> Template:
    return Template("review.html", context=page_context(request, "review"))


async def _is_sign_in(request: Request[Any, Any, Any]) -> bool:
    """Which requests the rate limit counts. A coroutine: Litestar runs a plain function here
    on a worker thread, a thread hop in front of every request."""
    return request.url.path == "/login" and request.method == "POST"


def create_app(
    settings: Settings, services: Services | None = None, local_token: str | None = None
) -> Litestar:
    """Build the app. Pass ``services`` to reuse an already built graph (tests, CLI);
    ``local_token`` is the admin key of command-line tools on this machine (server.json)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = services is None
        built = (
            services if services is not None else await asyncio.to_thread(Services.build, settings)
        )
        worker = BackgroundWorker(built.ingestor)
        app.state.services = built
        app.state.local_token = local_token
        app.state.worker = worker
        try:
            await asyncio.to_thread(built.ingestor.reconcile)
            await asyncio.to_thread(ingest_own_docs_once, built)
        except Exception:
            log.exception("start-up recovery failed; serving anyway")
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            if owned:
                built.close()

    front = frontend_dir()
    return Litestar(
        route_handlers=[
            chat_page,
            upload_page,
            login_page,
            login,
            logout,
            health,
            DocumentController,
            SearchController,
            ConversationController,
            ReviewController,
            OpenAICompatController,
            review_page,
            playground_page,
            dashboard_page,
            chart,
            answer_metrics,
            create_static_files_router(path="/static", directories=[front / "static"]),
        ],
        lifespan=[lifespan],
        middleware=[
            AuthMiddleware,
            RateLimitConfig(
                rate_limit=("minute", 20),
                # Sign-in attempts only: guessing passwords costs a minute per 20 tries.
                check_throttle_handler=_is_sign_in,
            ).middleware,
        ],
        template_config=TemplateConfig(directory=front / "templates", engine=JinjaTemplateEngine),
        openapi_config=OpenAPIConfig(
            title="Docent API",
            version="0.1.0",
            description="Upload documents, search them, and ask questions with cited answers.",
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        exception_handlers={
            DocentError: docent_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
        response_headers=[
            ResponseHeader(name="Content-Security-Policy", value=CSP),
            ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
            ResponseHeader(name="Referrer-Policy", value="no-referrer"),
        ],
        request_max_body_size=settings.max_upload_bytes,
    )
