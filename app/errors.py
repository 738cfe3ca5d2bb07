"""Failures Docent can report, each with a sentence a person can act on.

    DocentError                      code, message, who must act, HTTP status
    ├── InputError (the user)        bad input: nothing was stored
    │   ├── UploadTooLarge           413
    │   ├── UnsupportedType          415  unknown type, or content that contradicts its name
    │   ├── EmptyDocument            422  no text could be extracted
    │   ├── UnreadableDocument       422  corrupt file
    │   ├── EncryptedDocument        422  password-protected PDF
    │   └── InvalidRequest           400
    ├── NotFound (the user)          404  missing, or another tenant's: the two look the same
    ├── Busy (the operator)          409  another process owns the data directory
    ├── Unavailable (the operator)   503  a dependency (index, model, database) is down
    └── ProviderError (the operator) 502  a language model failed; vendor errors become this
        │                                 at the adapter, with a kind and whether to retry
        ├── StreamInterrupted             it failed after text had reached the user
        └── AllProvidersFailed       503  every provider in the chain failed or was skipped

The web layer maps these to JSON ``{code, message}`` in one place (app/web/errors.py).
"""

from __future__ import annotations

from typing import ClassVar, Literal

Audience = Literal["user", "operator", "developer"]


class DocentError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500
    audience: ClassVar[Audience] = "developer"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(DocentError):
    code = "invalid_input"
    status = 422
    audience = "user"


class UploadTooLarge(InputError):
    code = "upload_too_large"
    status = 413


class UnsupportedType(InputError):
    code = "unsupported_type"
    status = 415


class EmptyDocument(InputError):
    code = "empty_document"


class UnreadableDocument(InputError):
    code = "unreadable_document"


class EncryptedDocument(InputError):
    code = "encrypted_document"


class InvalidRequest(InputError):
    code = "invalid_request"
    status = 400


class NotFound(DocentError):
    code = "not_found"
    status = 404
    audience = "user"


class Busy(DocentError):
    code = "busy"
    status = 409
    audience = "operator"


class Unavailable(DocentError):
    code = "unavailable"
    status = 503
    audience = "operator"


ProviderFailure = Literal[
    "connect",  # could not reach it
    "timeout",  # no first token, or a stall, or past the total deadline
    "rate_limited",  # 429
    "overloaded",  # 529 / overloaded_error
    "server",  # 5xx
    "auth",  # 401 / 403: a configuration incident
    "bad_request",  # 400 / 404 / 422: retrying cannot help
    "context_length",  # 400: the prompt is longer than the model's context window
    "malformed",  # the response could not be parsed
    "interrupted",  # the stream ended without its terminal event
    "refused",  # content filter or refusal
]


class ProviderError(DocentError):
    code = "provider_error"
    status = 502
    audience = "operator"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        kind: ProviderFailure,
        retryable: bool,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after
        self.status_code = status_code

    def summary(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "kind": self.kind,
            "status": self.status_code,
            "retryable": self.retryable,
            "message": self.message,
        }


class StreamInterrupted(ProviderError):
    """Text had already been passed on when the provider failed: no silent fallback."""

    code = "interrupted"

    def __init__(self, cause: ProviderError, partial: str) -> None:
        super().__init__(
            cause.message,
            provider=cause.provider,
            kind=cause.kind,
            retryable=cause.retryable,
            status_code=cause.status_code,
        )
        self.cause = cause
        self.partial = partial


class AllProvidersFailed(DocentError):
    code = "all_providers_unavailable"
    status = 503
    audience = "operator"

    def __init__(self, attempts: list[ProviderError], skipped: list[str]) -> None:
        tried = ", ".join(f"{a.provider} ({a.kind})" for a in attempts) or "none"
        super().__init__(
            "No language model could answer just now (tried: "
            f"{tried}{'; circuit open: ' + ', '.join(skipped) if skipped else ''}). "
            "Try again in a minute; if it keeps happening, ask your administrator to check "
            "the model providers' keys and status."
        )
        self.attempts = attempts
        self.skipped = skipped
