"""One place that turns every error into the envelope of SPEC.md."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from agentmessage.kit.errors import ApiError, details_from_errors
from agentmessage.kit.idempotency import IdempotentReplay
from agentmessage.kit.responses import error_response


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.code, exc.message, request_id_of(request), exc.details, exc.headers
    )


async def handle_idempotent_replay(_request: Request, exc: Exception) -> Response:
    """The stored answer to an earlier request with the same Idempotency-Key."""
    assert isinstance(exc, IdempotentReplay)
    return Response(
        exc.body,
        status_code=exc.status,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    kinds = {str(e.get("type")) for e in errors}
    where = {e.get("loc", ("",))[0] for e in errors}
    if "json_invalid" in kinds:
        return error_response(
            400,
            "VALIDATION_FAILED",
            "request body is not valid JSON",
            request_id_of(request),
            {"body": "must be valid JSON"},
        )
    if where == {"path"}:
        # GET /v1/consent/bulk reached GET /v1/consent/{id} with "bulk" for an id:
        # the path exists, for other methods.
        literal = _literal_methods(request)
        if literal and request.method not in literal:
            return _method_not_allowed(request_id_of(request), literal)
    # A malformed path id is a malformed URL, not a bad field: 400.
    status = 400 if where == {"path"} else 422
    details = details_from_errors(errors)
    if details.get("body") == "must be an object" and not _sends_json(request):
        details["body"] = "must be a JSON object sent with Content-Type: application/json"
    return error_response(
        status,
        "VALIDATION_FAILED",
        "validation failed",
        request_id_of(request),
        details,
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    rid = request_id_of(request)
    if exc.status_code == 404:
        return error_response(404, "NOT_FOUND", "not found", rid)
    if exc.status_code == 405:
        methods = _allowed_methods(request)
        if not methods:
            return _method_not_allowed(rid, [(exc.headers or {}).get("Allow", "")])
        return _method_not_allowed(rid, methods)
    if exc.status_code == 400:
        # FastAPI's answer to a body it could not parse at all (nesting too deep...).
        return error_response(
            400,
            "VALIDATION_FAILED",
            "request body is not valid JSON",
            rid,
            {"body": "could not be parsed"},
        )
    return error_response(exc.status_code, "HTTP_ERROR", str(exc.detail), rid, headers=exc.headers)


def _sends_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def _method_not_allowed(rid: str, methods: list[str]) -> Response:
    return error_response(
        405, "METHOD_NOT_ALLOWED", "method not allowed", rid, headers={"Allow": ", ".join(methods)}
    )


def _literal_methods(request: Request) -> list[str]:
    """The methods of a path without parameters that is exactly this one, if any."""
    return _methods_of(request, with_parameters=False)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the path answers to (Starlette names only the first route's).

    A literal path (``/v1/consent/bulk``) speaks for itself; only when none matches
    do templates with parameters (``/v1/consent/{id}``) count.
    """
    return _literal_methods(request) or _methods_of(request, with_parameters=True)


def _methods_of(request: Request, *, with_parameters: bool) -> list[str]:
    """The methods of the documented paths matching this one (``with_parameters``:
    templates such as ``/v1/consent/{id}`` too)."""
    return sorted(
        {
            method
            for regex, templated, ops in _path_templates(request)
            if (with_parameters or not templated) and regex.match(request.url.path)
            for method in ops
        }
    )


def _path_templates(request: Request) -> list[tuple[re.Pattern[str], bool, list[str]]]:
    """(regex, has parameters, methods) of every documented path, computed once."""
    app = request.app
    templates = getattr(app.state, "path_templates", None)
    if templates is None:
        templates = [
            (compile_path(path)[0], "{" in path, sorted(op.upper() for op in operations))
            for path, operations in app.openapi()["paths"].items()
        ]
        app.state.path_templates = templates
    result: list[tuple[re.Pattern[str], bool, list[str]]] = templates
    return result


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(IdempotentReplay, handle_idempotent_replay)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
