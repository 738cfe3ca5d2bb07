"""The one place that turns failures into HTTP responses: JSON ``{code, message}``."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from app.errors import DocentError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: ("invalid_request", "The request is malformed."),
    401: ("unauthorized", "Sign in first."),
    403: ("forbidden", "You are not allowed to do this."),
    404: ("not_found", "Nothing exists at this address."),
    405: ("method_not_allowed", "This address does not accept that method."),
    413: (
        "upload_too_large",
        "The upload is larger than this server accepts. Split it into smaller files or ask "
        "the administrator to raise DOCENT_MAX_UPLOAD_BYTES.",
    ),
    415: ("unsupported_type", "The request body has a type this endpoint does not accept."),
}


def _body(code: str, message: str, status: int) -> Response[dict[str, str]]:
    return Response(
        {"code": code, "message": message}, status_code=status, media_type=MediaType.JSON
    )


def docent_error(_: Request[Any, Any, Any], exc: DocentError) -> Response[dict[str, str]]:
    return _body(exc.code, exc.message, exc.status)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        details = "; ".join(
            f"{e.get('key') or 'body'}: {e.get('message')}"
            for e in (exc.extra if isinstance(exc.extra, list) else [])
            if isinstance(e, dict)
        )
        return _body("invalid_request", f"The request is invalid. {details}".strip(), 400)
    code, message = _HTTP_CODES.get(status, ("error", exc.detail or "The request failed."))
    if status >= 500:
        log.error("HTTP %s: %s", status, exc.detail)
    return _body(code, message, status)


def unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    log.exception("unhandled error", exc_info=exc)
    return _body(
        "internal",
        "Something went wrong on the server. Try again; if it persists, check the server log.",
        500,
    )
