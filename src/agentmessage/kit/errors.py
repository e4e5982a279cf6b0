"""The error tree: every error the API answers with is one of these.

Each class names its ``code`` explicitly (the API contract), never derived from
the class name, so a rename cannot change what clients see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from pydantic_core import ErrorDetails


class ApiError(Exception):
    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = dict(details) if details else None
        self.headers = dict(headers) if headers else None
        super().__init__(self.message)


class BadRequest(ApiError):
    """Malformed request: a body that is not JSON, a path id that is not a UUID."""

    code = "VALIDATION_FAILED"
    status = 400
    default_message = "validation failed"


class ValidationFailed(ApiError):
    code = "VALIDATION_FAILED"
    status = 422
    default_message = "validation failed"


class Unauthorized(ApiError):
    code = "UNAUTHORIZED"
    status = 401
    default_message = "authentication failed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    code = "FORBIDDEN"
    status = 403
    default_message = "missing required scope"


class PlanRequired(ApiError):
    code = "PLAN_REQUIRED"
    status = 403
    default_message = "your plan does not include this feature"


class NotFound(ApiError):
    code = "NOT_FOUND"
    status = 404
    default_message = "not found"


class MethodNotAllowed(ApiError):
    code = "METHOD_NOT_ALLOWED"
    status = 405
    default_message = "method not allowed"


class IdempotencyInProgress(ApiError):
    """The same Idempotency-Key is still being processed: retry in a moment."""

    code = "IDEMPOTENCY_IN_PROGRESS"
    status = 409
    default_message = "a request with this Idempotency-Key is still in progress; retry later"


class IdempotencyKeyReused(ApiError):
    code = "IDEMPOTENCY_KEY_REUSED"
    status = 422
    default_message = "this Idempotency-Key was already used with a different request body"


class PayloadTooLarge(ApiError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413
    default_message = "request body too large"


class RateLimited(ApiError):
    """The organization's per-minute allowance is spent: retry after the window resets."""

    code = "RATE_LIMITED"
    status = 429
    default_message = "rate limited"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after)})


class ServiceUnavailable(ApiError):
    code = "UNAVAILABLE"
    status = 503
    default_message = "service unavailable"


class Internal(ApiError):
    code = "INTERNAL"
    status = 500
    default_message = "internal error"


# Pydantic's messages are written for Python developers; these are for API users.
_FRIENDLY: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be an array",
    "json_invalid": "body is not valid JSON",
}


def field_path(loc: Sequence[int | str], *, prefix: str = "") -> str:
    """``("body", "evidence", "ip_address")`` -> ``evidence.ip_address``; lists as ``[3]``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    path = prefix
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or "body"


def error_message(error: ErrorDetails | Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind in _FRIENDLY:
        return _FRIENDLY[kind]
    ctx = error.get("ctx") or {}
    if kind in ("string_too_short", "string_too_long"):
        low, high = ctx.get("min_length"), ctx.get("max_length")
        if kind == "string_too_long":
            return f"must be at most {ctx.get('max_length', high)} characters"
        return f"must be at least {low} character{'s' if low != 1 else ''}"
    if kind in ("too_short", "too_long"):
        low, high = ctx.get("min_length"), ctx.get("max_length")
        if kind == "too_long":
            return f"must have at most {high} items"
        return f"must have at least {low} item{'s' if low != 1 else ''}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return str(error.get("msg", "is out of range")).replace("Input should be", "must be")
    if kind == "enum" or kind == "literal_error":
        expected = ctx.get("expected", "")
        return f"must be one of {expected}" if expected else "is not an allowed value"
    message = str(error.get("msg", "is invalid"))
    # Custom errors carry our own wording; pydantic's own start with "Input should".
    message = message.removeprefix("Value error, ")
    return message.replace("Input should be", "must be")


def details_from_errors(
    errors: Iterable[ErrorDetails | Mapping[str, Any]], *, prefix: str = ""
) -> dict[str, str]:
    """One reason per field path, first error wins (the most basic one)."""
    details: dict[str, str] = {}
    for error in errors:
        details.setdefault(field_path(error.get("loc", ()), prefix=prefix), error_message(error))
    return details
