"""The OpenAPI document: error responses with the seeds' examples, served as
clients generated from it (openapi-typescript, openapi-python-client) must read it."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

_RID = "01JTBQH2FZ8K1RXC0WJ4Z9P3VM"
_SCHEMAS = "#/components/schemas/"
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


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
        responses[status] = {
            "model": ErrorEnvelope,
            "description": _EXAMPLES[status][3],
            "content": {"application/json": {"example": _example(status)}},
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


def _example(status: int) -> dict[str, Any]:
    code, message, details, _description = _EXAMPLES[status]
    error: dict[str, Any] = {"code": code, "message": message, "request_id": _RID}
    if details:
        error["details"] = details
    return {"success": False, "error": error}


class FastAPIForClients(FastAPI):
    """FastAPI, serving an OpenAPI document that generated clients take as it is
    (``for_clients``)."""

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            self.openapi_schema = for_clients(super().openapi())
        return self.openapi_schema


def for_clients(document: dict[str, Any]) -> dict[str, Any]:
    """``document``, corrected in place where a client generated from it would
    expect something other than what the API does.

    - FastAPI declares a 422 ``HTTPValidationError`` (``{"detail": [...]}``) on
      every operation with parameters or a body that declares no 422 itself. The
      API never answers with that: its validation errors are the envelope
      (``kit/handlers.py``), so the envelope is declared instead.
    - In a request body, ``default`` only says what the server assumes when the
      field is left out, but generators read it as "always present":
      openapi-typescript makes the field required, openapi-python-client fills
      the default in and sends it on every request. Request schemas keep the
      value in the description instead, so a field with a default is optional
      for whoever sends it and, when left out, gets the server's default. (A
      schema shared with a response would lose its defaults there too: a field
      then typed optional that is always sent, weaker but not wrong.)
    """
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    operations = [
        operation
        for path_item in document.get("paths", {}).values()
        for method, operation in path_item.items()
        if method in _METHODS
    ]
    for operation in operations:
        responses = operation.get("responses", {})
        if _schema_of(responses.get("422", {})) == {"$ref": _SCHEMAS + "HTTPValidationError"}:
            responses["422"] = _envelope_response(422, schemas)
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and not _referenced(document, name):
            del schemas[name]
    request_schemas = [_schema_of(operation.get("requestBody", {})) for operation in operations]
    for schema in _with_referenced(request_schemas, schemas):
        _move_defaults_to_descriptions(schema)
    return document


def _schema_of(body_or_response: dict[str, Any]) -> Any:
    return body_or_response.get("content", {}).get("application/json", {}).get("schema")


def _envelope_response(status: int, schemas: dict[str, Any]) -> dict[str, Any]:
    name = ErrorEnvelope.__name__
    if name not in schemas:
        envelope = ErrorEnvelope.model_json_schema(
            ref_template=_SCHEMAS + "{model}", mode="serialization"
        )
        schemas.update(envelope.pop("$defs", {}))
        schemas[name] = envelope
    return {
        "description": _EXAMPLES[status][3],
        "content": {
            "application/json": {
                "schema": {"$ref": _SCHEMAS + name},
                "example": _example(status),
            }
        },
    }


def _referenced(document: dict[str, Any], name: str) -> bool:
    """Whether anything but the schema ``name`` itself refers to it."""
    schemas = document["components"]["schemas"]
    others = {key: value for key, value in schemas.items() if key != name}
    rest = {**document, "components": {**document["components"], "schemas": others}}
    return json.dumps(_SCHEMAS + name) in json.dumps(rest)


def _with_referenced(roots: list[Any], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """``roots`` (the schemas that are objects) and every named schema they refer
    to, directly or through others."""
    found: list[dict[str, Any]] = []
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_SCHEMAS):
                name = ref.removeprefix(_SCHEMAS)
                if name not in names and name in schemas:
                    names.add(name)
                    found.append(schemas[name])
                    visit(schemas[name])
            for value in node.values():
                visit(value)

    found.extend(root for root in roots if isinstance(root, dict))
    visit(roots)
    return found


def _move_defaults_to_descriptions(schema: dict[str, Any]) -> None:
    """Each property's ``default`` into its description, in this schema and the
    schemas nested in it (not into named ones: ``_with_referenced`` lists those)."""
    for prop in schema.get("properties", {}).values():
        if not isinstance(prop, dict):
            continue
        if "default" in prop:
            sentence = f"Default when left out: {json.dumps(prop.pop('default'))}."
            described = prop.get("description")
            prop["description"] = f"{described} {sentence}" if described else sentence
        _move_defaults_to_descriptions(prop)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            _move_defaults_to_descriptions(schema[key])
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key, []):
            if isinstance(sub, dict):
                _move_defaults_to_descriptions(sub)
