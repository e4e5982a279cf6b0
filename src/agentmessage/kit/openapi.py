"""Error responses for the OpenAPI document, with the seeds' examples."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

_RID = "01JTBQH2FZ8K1RXC0WJ4Z9P3VM"


class ErrorDetail(BaseModel):
    code: str = Field(examples=["VALIDATION_FAILED"])
    message: str
    request_id: str = Field(description="ULID, also sent as the X-Request-Id header.")
    details: dict[str, str] | None = Field(
        default=None, description="Field path -> human-readable reason."
    )


class ErrorEnvelope(BaseModel):
    success: bool = Field(default=False, examples=[False])
    error: ErrorDetail


_EXAMPLES: dict[int, tuple[str, str, dict[str, str] | None, str]] = {
    400: ("VALIDATION_FAILED", "validation failed", {"id": "must be a UUID"}, "Malformed request"),
    401: ("UNAUTHORIZED", "authentication failed", None, "Missing, unknown or revoked API key"),
    403: ("FORBIDDEN", "missing required scope", None, "The key lacks the scope"),
    404: ("NOT_FOUND", "not found", None, "Unknown id, or another organization's"),
    409: ("IDEMPOTENCY_IN_PROGRESS", "a request with this key is in progress", None, "Retry later"),
    413: ("PAYLOAD_TOO_LARGE", "request body is larger than 1 MiB", None, "Body too large"),
    422: (
        "VALIDATION_FAILED",
        "validation failed",
        {"to": "must be E.164", "body": "must be 1..1600 chars"},
        "Validation failed",
    ),
    429: ("RATE_LIMITED", "rate limited", None, "Per-organization allowance spent"),
    500: ("INTERNAL", "internal error", None, "Unexpected error (never a stack trace)"),
}


def error_responses(
    *statuses: int, plan_message: str | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the envelope and an example.

    ``plan_message``: the route is plan-gated, so 403 may also be PLAN_REQUIRED.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        code, message, details, description = _EXAMPLES[status]
        error: dict[str, Any] = {"code": code, "message": message, "request_id": _RID}
        if details:
            error["details"] = details
        responses[status] = {
            "model": ErrorEnvelope,
            "description": description,
            "content": {"application/json": {"example": {"success": False, "error": error}}},
        }
    if plan_message is not None and 403 in responses:
        forbidden = responses[403]["content"]["application/json"].pop("example")
        plan_error = {"code": "PLAN_REQUIRED", "message": plan_message, "request_id": _RID}
        plan = {"success": False, "error": plan_error}
        responses[403]["description"] = "Missing scope, or attested capture not in the plan"
        responses[403]["content"]["application/json"]["examples"] = {
            "FORBIDDEN": {"value": forbidden},
            "PLAN_REQUIRED": {"value": plan},
        }
    return responses
