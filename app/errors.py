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
    └── Unavailable (the operator)   503  a dependency (index, model, database) is down

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
