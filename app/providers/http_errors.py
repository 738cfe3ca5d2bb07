"""What an HTTP failure of a model API means for us, whichever vendor returned it.

Both SDK adapters reduce a vendor exception to (status, headers, error type) and call
``classify``; the fallback chain reads only the resulting ``ProviderError``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from app.errors import ProviderError

# Error types carried in response bodies (Anthropic's error.type, OpenAI's error.type/code).
_OVERLOADED = {"overloaded_error", "overloaded"}
_SERVER = {"api_error", "server_error", "internal_server_error", "service_unavailable"}
_RATE = {"rate_limit_error", "rate_limit_exceeded", "insufficient_quota"}
_AUTH = {"authentication_error", "permission_error", "invalid_api_key"}
_REFUSED = {"content_filter", "content_policy_violation"}
# A prompt longer than the model's context: OpenAI's code, llama.cpp's type, and the wording of
# Anthropic ("prompt is too long: 210000 tokens > 200000 maximum"), vLLM and Ollama.
_CONTEXT = {"context_length_exceeded", "exceed_context_size_error"}
_CONTEXT_WORDS = re.compile(
    r"context[ _](length|window|size)|maximum context|prompt is too long|too many (input )?tokens"
    r"|exceeds? the (available )?context",
    re.I,
)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify(
    provider: str,
    status: int | None,
    headers: Mapping[str, str],
    error_type: str | None,
    detail: str,
    error_code: str | None = None,
) -> ProviderError:
    """A ProviderError for an HTTP status (None for an in-band stream error) and the body's
    error type and code (OpenAI puts ``content_policy_violation`` in the code)."""
    kind: str
    retryable: bool
    etype = (error_type or "").lower()
    if (error_code or "").lower() in _REFUSED | _RATE | _AUTH | _OVERLOADED:
        etype = (error_code or "").lower()
    if etype in _OVERLOADED or status == 529:
        kind, retryable = "overloaded", True
    elif etype in _RATE or status == 429:
        kind, retryable = "rate_limited", True
    elif etype in _AUTH or status in (401, 403):
        kind, retryable = "auth", False
    elif etype in _REFUSED:
        kind, retryable = "refused", False
    elif etype in _SERVER or (status is not None and status >= 500) or status in (408, 409):
        kind, retryable = "server", True
    elif (
        (error_code or "").lower() in _CONTEXT
        or etype in _CONTEXT
        or (status in (400, 413, 422, None) and _CONTEXT_WORDS.search(detail))
    ):
        kind, retryable = "context_length", False
    else:
        kind, retryable = "bad_request", False
    lowered = {k.lower(): v for k, v in headers.items()}
    if lowered.get("x-should-retry", "").lower() == "false":
        retryable = False
    message = {
        "overloaded": f"{provider} is overloaded",
        "rate_limited": f"{provider} is rate limiting Docent",
        "auth": f"{provider} refused Docent's API key (check its key and permissions)",
        "refused": f"{provider} declined to answer",
        "server": f"{provider} had a server error",
        "bad_request": f"{provider} rejected the request",
        "context_length": f"{provider} cannot take a prompt this long",
    }[kind]
    code = f"HTTP {status}" if status else "in-band error"
    return ProviderError(
        f"{message} ({code}{', ' + etype if etype else ''}): {detail[:200]}",
        provider=provider,
        kind=kind,  # type: ignore[arg-type]
        retryable=retryable,
        retry_after=retry_after_seconds(headers),
        status_code=status,
    )


def transport_error(provider: str, exc: Exception) -> ProviderError | None:
    """A ProviderError for a raw transport exception an SDK let through (httpx's read
    timeouts and resets while a stream is iterated), or None if ``exc`` is not one."""
    module = type(exc).__module__
    if not module.startswith(("httpx", "httpcore", "h11")) and not isinstance(exc, OSError):
        return None
    name = type(exc).__name__
    if name in ("ConnectTimeout", "ConnectError"):
        return ProviderError(
            f"{provider} could not be reached ({name})",
            provider=provider,
            kind="connect",
            retryable=name == "ConnectError",
        )
    if "Timeout" in name:
        return ProviderError(
            f"{provider} timed out ({name})", provider=provider, kind="timeout", retryable=False
        )
    return ProviderError(
        f"{provider}'s connection broke ({name})",
        provider=provider,
        kind="interrupted",
        retryable=True,
    )


def _no_connection_in_time(provider: str) -> ProviderError:
    return ProviderError(
        f"{provider} did not accept a connection in time",
        provider=provider,
        kind="connect",
        retryable=False,
    )


def aiohttp_error(provider: str, exc: BaseException) -> ProviderError | None:
    """A ProviderError from the aiohttp exception under an SDK error, or None if there is
    none. The SDKs' aiohttp transport renames aiohttp's errors to httpx's, coarsely: a
    refused connection arrives as ``ConnectTimeout``, which must not cost a timeout's
    treatment (no retry) when it failed fast."""
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and not type(cause).__module__.startswith("aiohttp") and seen < 8:
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    if cause is None or not type(cause).__module__.startswith("aiohttp"):
        return None
    name = type(cause).__name__
    if isinstance(cause, TimeoutError) or "Timeout" in name:
        if "Connect" in name or "Connection" in name:
            return _no_connection_in_time(provider)
        return ProviderError(
            f"{provider} timed out ({name})", provider=provider, kind="timeout", retryable=False
        )
    if name.startswith("ClientConnector"):
        return ProviderError(
            f"{provider} could not be reached ({name}: {cause})",
            provider=provider,
            kind="connect",
            # A refused connection fails fast and may be a restart; a bad certificate or an
            # unknown host will not change in a second.
            retryable="Certificate" not in name and "SSL" not in name and "DNS" not in name,
        )
    if name in ("ServerDisconnectedError", "ClientPayloadError", "ClientOSError"):
        return ProviderError(
            f"{provider}'s connection broke ({name})",
            provider=provider,
            kind="interrupted",
            retryable=True,
        )
    return None


def timed_out(provider: str, exc: Exception) -> ProviderError:
    """An SDK timeout. A connect timeout (a blackholed host) is not retried: waiting for a
    second one only delays the fallback; refused connections, which fail fast, are."""
    if type(exc.__cause__).__name__ == "ConnectTimeout":
        return _no_connection_in_time(provider)
    return ProviderError(
        f"{provider} timed out", provider=provider, kind="timeout", retryable=False
    )


def unreachable(provider: str, exc: Exception) -> ProviderError:
    return ProviderError(
        f"{provider} could not be reached ({type(exc.__cause__).__name__})",
        provider=provider,
        kind="connect",
        retryable=True,
    )


def unreadable(provider: str, exc: Exception) -> ProviderError:
    return ProviderError(
        f"{provider} sent a response Docent could not read ({type(exc).__name__})",
        provider=provider,
        kind="malformed",
        retryable=False,
    )
