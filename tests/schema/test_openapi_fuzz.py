"""Schemathesis over every operation of our own /openapi.json, with a valid key,
against the real server (`agentmessage serve`) on each database.

All of Schemathesis's default checks run (server errors, status codes, content
types, headers and bodies against the schema, undeclared methods, schema-valid
data accepted and schema-invalid data refused), in every phase (examples,
coverage, fuzzing, stateful), plus `no_trace_or_sql` (hooks.py). Zero failures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.common import create_tenant, running_server

from agentmessage.db.engine import create_engine
from agentmessage.db.migrate import upgrade_to_head

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_schemathesis_finds_nothing(backend, database_url_factory, tmp_path):
    url = database_url_factory(backend)
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        tenant = await create_tenant(engine, rate_limit_per_minute=1_000_000)
    finally:
        await engine.dispose()
    with running_server(url, tmp_path) as server:
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schema.hooks", "PYTHONPATH": str(ROOT)}
        run = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"{server.base_url}/openapi.json",
                "--header",
                f"Authorization: Bearer {tenant.key}",
                "--checks",
                "all",
                "--max-examples",
                "25",
                "--seed",
                "20261123",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=600,
        )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
