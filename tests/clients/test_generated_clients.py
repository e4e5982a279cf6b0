"""Clients generated from the served /openapi.json take the seeds' own examples.

Every example of the API reference pages (tests/data/seed_examples.json: request
bodies and every success and error response) is checked against TypeScript types
from openapi-typescript under `tsc --strict` (object literals, so unknown fields
are errors too), and against a Python client from openapi-python-client: a request
built from the example is sent exactly as written, and a response is parsed by the
model the operation declares for its status, with no field left unknown.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import httpx
import pytest

SEED_EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "seed_examples.json"
OPERATIONS: list[dict[str, Any]] = json.loads(SEED_EXAMPLES.read_text())["operations"]
SCHEMAS = "#/components/schemas/"


def operation_id(op: dict[str, Any]) -> str:
    return f"{op['seed'][:3]} {op['method']} {op['path']}"


def declared(document: Any, op: dict[str, Any], statuses: list[int]) -> list[int]:
    """Those of ``statuses`` the document declares for the seed's operation (at least one)."""
    responses = document["paths"][op["path"]][op["method"].lower()]["responses"]
    found = [status for status in statuses if str(status) in responses]
    assert found, f"{operation_id(op)} declares none of {statuses}"
    return found


def operations(document: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def request_schemas(document: Any) -> dict[str, Any]:
    """Every named schema a request body uses, directly or nested."""
    schemas = document["components"]["schemas"]
    found: dict[str, Any] = {}

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            ref = node.get("$ref", "")
            name = ref.removeprefix(SCHEMAS)
            if ref.startswith(SCHEMAS) and name not in found:
                found[name] = schemas[name]
                visit(schemas[name])
            for value in node.values():
                visit(value)

    for _method, _path, operation in operations(document):
        visit(operation.get("requestBody", {}))
    return found


# -- The document ------------------------------------------------------------


def test_every_json_error_response_is_the_envelope(openapi_document):
    wrong = [
        f"{method} {path} {status}: {content['application/json'].get('schema')}"
        for method, path, operation in operations(openapi_document)
        for status, response in operation["responses"].items()
        if status[0] in "45"
        and (content := response.get("content", {})).get("application/json")
        and content["application/json"].get("schema") != {"$ref": SCHEMAS + "ErrorEnvelope"}
    ]
    assert wrong == []
    assert "HTTPValidationError" not in json.dumps(openapi_document)


# -- TypeScript: openapi-typescript, then tsc --strict -------------------------

OPTIONAL_KEYS = """
type OptionalKeys<T> = { [K in keyof T]-?: {} extends Pick<T, K> ? K : never }[keyof T];
type Same<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2
  ? true
  : false;
"""


def typescript_errors(run: subprocess.CompletedProcess[str], source: str) -> str:
    """tsc's output, each error followed by the line it is about."""
    lines = source.splitlines()
    out = []
    for line in (run.stdout + run.stderr).splitlines():
        out.append(line)
        if match := re.match(r".*\.ts\((\d+),\d+\): error", line):
            out.append("    " + lines[int(match.group(1)) - 1][:300])
    return "\n".join(out)


def test_seed_examples_type_check_against_the_generated_typescript(openapi_document, typescript):
    source = ['import type { paths } from "./api";']
    for op in OPERATIONS:
        operation = f'paths["{op["path"]}"]["{op["method"].lower()}"]'
        name = f"seed_{op['seed'][:3]}_{op['method'].lower()}"
        if "request" in op:
            body_type = f'NonNullable<{operation}["requestBody"]>["content"]["application/json"]'
            source.append(
                f"export const {name}_request: {body_type} = {json.dumps(op['request'])};"
            )
        for index, example in enumerate(op["responses"]):
            for status in declared(openapi_document, op, example["statuses"]):
                body_type = f'{operation}["responses"][{status}]["content"]["application/json"]'
                source.append(
                    f"export const {name}_response_{index}_{status}: {body_type} = "
                    f"{json.dumps(example['body'], ensure_ascii=False)};"
                )
    text = "\n".join(source) + "\n"
    run = typescript.check("seed_examples.ts", text)
    assert run.returncode == 0, typescript_errors(run, text)


def test_typescript_request_fields_are_optional_exactly_when_not_required(
    openapi_document, typescript
):
    """A field with a default (`expires_in`) is optional for whoever sends it."""
    source = ['import type { components } from "./api";', OPTIONAL_KEYS]
    for name, schema in request_schemas(openapi_document).items():
        optional = sorted(set(schema.get("properties", {})) - set(schema.get("required", [])))
        expected = " | ".join(json.dumps(key) for key in optional) or "never"
        source.append(
            f'export const optional_{name}: Same<OptionalKeys<components["schemas"]["{name}"]>, '
            f"{expected}> = true;"
        )
    text = "\n".join(source) + "\n"
    run = typescript.check("request_optional_fields.ts", text)
    assert run.returncode == 0, typescript_errors(run, text)


# -- Python: openapi-python-client -------------------------------------------


def generated_operation(package: ModuleType, document: Any, op: dict[str, Any]) -> ModuleType:
    """The module of the operation (``api/<tag>/<operationId>.py``)."""
    operation_id = document["paths"][op["path"]][op["method"].lower()]["operationId"]
    api = importlib.import_module(f"{package.__name__}.api")
    # Named in snake case: "revoke_consent_v1_consent__id__delete" is in
    # revoke_consent_v1_consent_id_delete.py.
    wanted = re.sub(r"_+", "_", operation_id)
    for module in pkgutil.walk_packages(api.__path__, f"{api.__name__}."):
        if module.name.rsplit(".", 1)[1] == wanted:
            return importlib.import_module(module.name)
    raise AssertionError(f"no module for {operation_id} in the generated client")


def same_json(sent: Any, seed: Any, where: str = "body") -> list[str]:
    """Where ``sent`` differs from ``seed``; an RFC 3339 time may be spelt with
    ``+00:00`` for ``Z`` (the generated client writes ``isoformat()``)."""
    if isinstance(seed, dict) and isinstance(sent, dict):
        keys = sorted(set(seed) | set(sent))
        return [
            d
            for k in keys
            for d in same_json(sent.get(k, "<absent>"), seed.get(k, "<absent>"), f"{where}.{k}")
        ]
    if isinstance(seed, list) and isinstance(sent, list) and len(seed) == len(sent):
        return [
            d for i, (a, b) in enumerate(zip(sent, seed)) for d in same_json(a, b, f"{where}[{i}]")
        ]
    if sent == seed or (isinstance(sent, str) and isinstance(seed, str) and same_time(sent, seed)):
        return []
    return [f"{where}: {sent!r} instead of {seed!r}"]


def same_time(a: str, b: str) -> bool:
    try:
        first, second = datetime.fromisoformat(a), datetime.fromisoformat(b)
    except ValueError:
        return False
    return first.tzinfo is not None and second.tzinfo is not None and first == second


def unknown_fields(value: Any, where: str = "body") -> list[str]:
    """Fields the generated models kept aside as undeclared (``additional_properties``);
    a model with no declared field of its own is a map, where that is its content."""
    if isinstance(value, list):
        return [u for i, item in enumerate(value) for u in unknown_fields(item, f"{where}[{i}]")]
    if not attrs.has(type(value)):
        return []
    fields = [f for f in attrs.fields(type(value)) if f.name != "additional_properties"]
    extra = getattr(value, "additional_properties", {}) if fields else {}
    found = [f"{where}: {type(value).__name__} does not declare {sorted(extra)}"] if extra else []
    for field in fields:
        found += unknown_fields(getattr(value, field.name), f"{where}.{field.name}")
    return found


def unset_of(package: ModuleType) -> Any:
    """The generated client's marker of a field left out."""
    return importlib.import_module(f"{package.__name__}.types").UNSET


def rebuilt(value: Any, unset: Any) -> Any:
    """``value`` made again through the models' constructors, with only the fields
    it has: what a caller writing the example by hand gets."""
    if isinstance(value, list):
        return [rebuilt(item, unset) for item in value]
    if not attrs.has(type(value)):
        return value
    given = {
        field.alias or field.name: rebuilt(getattr(value, field.name), unset)
        for field in attrs.fields(type(value))
        if field.init and getattr(value, field.name) is not unset
    }
    made = type(value)(**given)
    if hasattr(value, "additional_properties"):
        made.additional_properties = dict(value.additional_properties)
    return made


def call(
    package: ModuleType, document: Any, op: dict[str, Any], status: int, body: Any
) -> tuple[Any, list[Any]]:
    """The generated operation, against a server answering ``status`` and ``body``;
    returns the parsed answer and the JSON bodies the client sent."""
    sent: list[Any] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content) if request.content else None)
        return httpx.Response(status, json=body)

    module = generated_operation(package, document, op)
    client = package.AuthenticatedClient(
        base_url="https://api.example.test",
        token="am_live_" + "x" * 32,
        raise_on_unexpected_status=True,
        httpx_args={"transport": httpx.MockTransport(server)},
    )
    arguments: dict[str, Any] = {"client": client}
    signature = inspect.signature(module.sync_detailed)
    for name, value in op.get("path_params", {}).items():
        annotation = str(signature.parameters[name].annotation)
        arguments[name] = uuid.UUID(value) if "UUID" in annotation else value
    if "request" in op:
        model = signature.parameters["body"].annotation
        arguments["body"] = rebuilt(model.from_dict(op["request"]), unset_of(package))
    with client:
        response = module.sync_detailed(**arguments)
    return response.parsed, sent


@pytest.mark.parametrize("op", [op for op in OPERATIONS if "request" in op], ids=operation_id)
def test_python_client_sends_the_seed_request_as_written(op, openapi_document, python_package):
    success = op["responses"][0]
    status = declared(openapi_document, op, success["statuses"])[0]
    _parsed, sent = call(python_package, openapi_document, op, status, success["body"])
    assert len(sent) == 1
    assert same_json(sent[0], op["request"]) == []


@pytest.mark.parametrize("op", OPERATIONS, ids=operation_id)
def test_python_client_parses_every_seed_response(op, openapi_document, python_package):
    problems = []
    for example in op["responses"]:
        for status in declared(openapi_document, op, example["statuses"]):
            parsed, _sent = call(python_package, openapi_document, op, status, example["body"])
            where = f"{status} {example['body'].get('error', {}).get('code', '')}".strip()
            problems += unknown_fields(parsed, where)
            problems += same_json(parsed.to_dict(), example["body"], where)
    assert problems == []


def test_python_request_models_leave_out_what_the_caller_leaves_out(
    openapi_document, python_package
):
    """A field the schema does not require is not sent unless given: the client fills
    in no default."""
    unset = unset_of(python_package)
    filled_in, required, in_schema = [], {}, {}
    for name, schema in request_schemas(openapi_document).items():
        fields = [f for f in attrs.fields(getattr(python_package.models, name)) if f.init]
        filled_in += [
            f"{name}.{f.name} = {f.default!r}"
            for f in fields
            if f.default is not attrs.NOTHING and f.default is not unset
        ]
        required[name] = len([f for f in fields if f.default is attrs.NOTHING])
        in_schema[name] = len(schema.get("required", []))
    assert filled_in == []
    assert required == in_schema


def test_generated_python_client_passes_mypy_strict(python_client: Path, tmp_path):
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--config-file",
            str(config),
            str(python_client),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
