"""The served /openapi.json and the clients generated from it, once per session.

- Python: openapi-python-client (a pinned dev dependency), generated into a
  temporary directory and imported.
- TypeScript: openapi-typescript and TypeScript pinned by package.json and
  package-lock.json beside this file, installed by `npm ci` into
  tests/clients/node_modules (git-ignored) unless it holds what the lock file
  names. Without node and npm (or the npm registry), the TypeScript tests
  skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from agentmessage.app import create_app
from agentmessage.settings import Settings
from tests.fixtures.required import required_in_ci

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
# The hash of the package-lock.json that node_modules was installed from.
INSTALLED_LOCK = NODE_MODULES / ".agentmessage-installed-lock"
OPENAPI_PYTHON_CLIENT = str(Path(sys.executable).with_name("openapi-python-client"))
PYTHON_PACKAGE = "agentmessage_client"


@pytest.fixture(scope="session")
async def openapi_document(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """``GET /openapi.json`` of the app, as served."""
    data_dir = tmp_path_factory.mktemp("openapi-app")
    app = create_app(Settings(data_dir=data_dir, secret_key="test-secret-key-0123456789"))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/openapi.json")
    await app.state.database.dispose()
    assert response.status_code == 200
    yield response.json()


@pytest.fixture(scope="session")
def openapi_file(openapi_document: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(openapi_document, indent=1))
    return path


@pytest.fixture(scope="session")
def python_client(openapi_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package openapi-python-client generates, importable as ``agentmessage_client``;
    yields its directory."""
    root = tmp_path_factory.mktemp("python-client")
    config = root / "config.yaml"
    config.write_text("post_hooks: []\n")  # no ruff formatting of the generated code
    package = root / PYTHON_PACKAGE
    run = subprocess.run(
        [
            OPENAPI_PYTHON_CLIENT,
            "generate",
            "--path",
            str(openapi_file),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(package),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0 and "Warning" not in run.stdout, run.stdout + run.stderr
    sys.path.insert(0, str(root))
    try:
        yield package
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.split(".")[0] == PYTHON_PACKAGE]:
            del sys.modules[name]


@pytest.fixture(scope="session")
def python_package(python_client: Path) -> ModuleType:
    return importlib.import_module(PYTHON_PACKAGE)


class NodeUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class TypeScript:
    """The generated ``api.ts`` (``paths`` and ``components``) and a ``tsc`` to check
    more files against it."""

    workdir: Path

    def check(self, name: str, source: str) -> subprocess.CompletedProcess[str]:
        """``tsc --strict --noEmit`` over ``source`` (which may import ``./api``)."""
        path = self.workdir / name
        path.write_text(source)
        return subprocess.run(
            [
                "node",
                str(NODE_MODULES / "typescript" / "bin" / "tsc"),
                "--strict",
                "--noEmit",
                "--pretty",
                "false",
                "--target",
                "es2022",
                "--module",
                "esnext",
                "--moduleResolution",
                "bundler",
                str(path),
            ],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            timeout=300,
        )


def _install_node_tools() -> None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise NodeUnavailable(f"no `{tool}` on PATH")
    lock = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()
    if INSTALLED_LOCK.exists() and INSTALLED_LOCK.read_text() == lock:
        return
    run = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=600,
    )
    if run.returncode != 0:
        raise NodeUnavailable(f"`npm ci` failed: {run.stderr.strip()[-2000:]}")
    INSTALLED_LOCK.write_text(lock)


@pytest.fixture(scope="session")
def typescript(openapi_file: Path, tmp_path_factory: pytest.TempPathFactory) -> TypeScript:
    """openapi-typescript's types of the served document, in a directory of their own."""
    required_in_ci("node and npm (openapi-typescript, tsc)", _install_node_tools, NodeUnavailable)
    workdir = tmp_path_factory.mktemp("typescript")
    run = subprocess.run(
        [
            "node",
            str(NODE_MODULES / "openapi-typescript" / "bin" / "cli.js"),
            str(openapi_file),
            "--output",
            str(workdir / "api.ts"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return TypeScript(workdir)
