"""The agentmessage command, run as a user runs it: a subprocess on a real database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select

from agentmessage.db.engine import create_engine
from agentmessage.db.migrate import alembic_config
from agentmessage.db.models import ApiKey, Organization, PhoneNumber

AGENTMESSAGE = str(Path(sys.executable).with_name("agentmessage"))


@pytest.fixture(params=["sqlite", "postgresql"])
def cli_database(request, database_url_factory) -> str:
    return database_url_factory(request.param)


@pytest.fixture
def run(cli_database, tmp_path):
    env = {
        **os.environ,
        "AGENTMESSAGE_DATABASE_URL": cli_database,
        "AGENTMESSAGE_DATA_DIR": str(tmp_path),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AGENTMESSAGE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    return run


def _json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def test_create_org_number_and_key_on_a_fresh_database(run, cli_database):
    org = _json(run("orgs", "create", "--name", "Acme Dental", "--plan", "starter"))
    assert org["name"] == "Acme Dental"
    assert org["plan"] == "starter"
    assert org["rate_limit_per_minute"] == 600  # the plan's default
    custom = _json(run("orgs", "create", "--name", "Big", "--rate-limit", "50"))
    assert custom["plan"] == "payg" and custom["rate_limit_per_minute"] == 50

    number = _json(run("numbers", "create", "--org", org["id"], "--number", "+15550100001"))
    assert number["org_id"] == org["id"]
    assert number["number"] == "+15550100001"

    key = _json(
        run("keys", "create", "--org", org["id"], "--scopes", "consent:read,consent:write",
            "--name", "ci")
    )  # fmt: skip
    assert key["key"].startswith("am_live_") and len(key["key"]) >= 8 + 32
    assert key["scopes"] == ["consent:read", "consent:write"]

    # Only a hash of the key is stored.
    engine = create_engine(cli_database)
    async with engine.connect() as connection:
        stored = (await connection.execute(select(ApiKey))).one()
    await engine.dispose()
    assert key["key"] not in " ".join(str(value) for value in stored)
    assert stored.key_hash != key["key"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("orgs", "create", "--name", ""), "name"),
        (("orgs", "create", "--name", "\u200b\u3164"), "name"),
        (
            ("orgs", "create", "--name", "X", "--help-text", "\u2800\u200b"),
            "help_text",
        ),
        (
            (
                "consents",
                "export",
                "--org",
                "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                "--since",
                "9999-12-31T23:00:00-05:00",
            ),
            "is out of range: later than 9999-12-31T23:59:59Z",
        ),
        (
            (
                "consents",
                "export",
                "--org",
                "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                "--since",
                "1900-01-01T00:00:00Z",
            ),
            "must be an RFC 3339 time on or after 1992-01-01",
        ),
        (("orgs", "create", "--name", "X", "--plan", "platinum"), "invalid choice"),
        (("orgs", "create", "--name", "X", "--rate-limit", "0"), "rate_limit"),
        (("numbers", "create", "--org", "nope", "--number", "+15550100001"), "not a UUID"),
        (
            (
                "numbers",
                "create",
                "--org",
                "497f6eca-6276-4993-bfeb-53cbbbba6f08",
                "--number",
                "+15550100001",
            ),
            "organization not found",
        ),
        (("keys", "create", "--org", "497f6eca-6276-4993-bfeb-53cbbbba6f08"), "--scopes"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_a_message_on_stderr(run, args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_bad_number_and_scopes_write_nothing(run):
    org = _json(run("orgs", "create", "--name", "Acme"))
    bad = run("numbers", "create", "--org", org["id"], "--number", "555-0100")
    assert bad.returncode == 2 and "must be E.164" in bad.stderr
    bad = run("keys", "create", "--org", org["id"], "--scopes", "consent:read,admin")
    assert bad.returncode == 2 and "scopes" in bad.stderr
    good = _json(run("numbers", "create", "--org", org["id"], "--number", "+15550100001"))
    duplicate = run("numbers", "create", "--org", org["id"], "--number", "+15550100001")
    assert duplicate.returncode == 2 and "already" in duplicate.stderr
    assert good["number"] == "+15550100001"


def test_a_number_of_one_organization_cannot_be_registered_by_another(run):
    # Inbound STOPs find their organization by number: a second owner would never
    # hear its contacts opt out.
    first = _json(run("orgs", "create", "--name", "Acme"))
    second = _json(run("orgs", "create", "--name", "Globex"))
    _json(run("numbers", "create", "--org", first["id"], "--number", "+15550100001"))
    taken = run("numbers", "create", "--org", second["id"], "--number", "+15550100001")
    assert taken.returncode == 2
    assert "already a sender number of another organization" in taken.stderr
    assert "Traceback" not in taken.stderr and taken.stdout == ""
    other = _json(run("numbers", "create", "--org", second["id"], "--number", "+15550100002"))
    assert other["org_id"] == second["id"]


async def test_a_number_registered_twice_before_0013_stops_the_upgrade_naming_it(run, cli_database):
    # A database from before migration 0013 where two organizations share a number:
    # which keeps it is the operator's call, so the upgrade stops and says so.
    engine = create_engine(cli_database)
    try:
        async with engine.begin() as connection:

            def to_0012(sync_connection):
                config = alembic_config()
                config.attributes["connection"] = sync_connection
                command.upgrade(config, "0012")

            await connection.run_sync(to_0012)
            at = datetime(2026, 1, 1, tzinfo=UTC)
            for name in ("Acme", "Globex"):
                org_id = uuid.uuid4()
                await connection.execute(
                    insert(Organization).values(id=org_id, name=name, plan="growth", created_at=at)
                )
                await connection.execute(
                    insert(PhoneNumber).values(
                        org_id=org_id, id=uuid.uuid4(), number="+15550100001", created_at=at
                    )
                )
    finally:
        await engine.dispose()
    refused = run("migrate")
    assert refused.returncode == 2
    assert "+15550100001 (2 organizations)" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_demo_creates_data_once_and_prints_a_working_curl(run):
    first = run("demo")
    assert first.returncode == 0, first.stderr
    assert "am_live_" in first.stderr
    assert "Demo organization 'Demo Dental' (plan growth, id " in first.stderr
    assert "curl -s http://127.0.0.1:8000/v1/consent -H 'Authorization: Bearer am_live_" in (
        first.stderr
    )
    second = run("demo")
    assert second.returncode == 0
    assert "am_live_" not in second.stderr
    assert "keys create --org" in second.stderr


def test_migrate_is_idempotent(run):
    assert run("migrate").returncode == 0
    assert run("migrate").returncode == 0


def test_the_log_format_shows_no_field_the_server_stops_computing() -> None:
    """``main`` turns off the caller lookup, thread and process fields per log
    record (a line per request): a format that showed one would print blanks."""
    from agentmessage.cli import LOG_FORMAT

    shown = set(re.findall(r"%\((\w+)\)", LOG_FORMAT))
    assert shown == {"asctime", "levelname", "name", "message"}
