"""The ``agentmessage`` command: serve, migrate, and create organizations, numbers, keys."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from pydantic_core import PydanticCustomError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.keys import SCOPES
from agentmessage.auth.service import Caller, OrgScope, create_key
from agentmessage.consent.schemas import CONSENT_METHODS
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import MigrationRefused, upgrade_to_head
from agentmessage.db.models import Organization, PhoneNumber
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import ApiError
from agentmessage.kit.timefmt import format_rfc3339, parse_client_time
from agentmessage.orgs.plans import PLANS
from agentmessage.orgs.service import create_organization, create_phone_number
from agentmessage.settings import Settings

EXIT_USAGE = 2


def _fail(message: str) -> NoReturn:
    print(f"agentmessage: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a UUID") from None


def _boolean(value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise argparse.ArgumentTypeError("must be true or false")


def _rfc3339(value: str) -> datetime:
    try:
        return parse_client_time(value)
    except PydanticCustomError as exc:
        raise argparse.ArgumentTypeError(exc.message()) from None


def _emit(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2))


def _org_json(org: Organization) -> dict[str, Any]:
    return {
        "id": str(org.id),
        "name": org.name,
        "plan": org.plan,
        "rate_limit_per_minute": org.rate_limit_per_minute
        or PLANS[org.plan].default_rate_limit_per_minute,
        "help_text": org.help_text,
        "opt_out_confirmation": org.opt_out_confirmation,
        "created_at": format_rfc3339(org.created_at),
    }


def _number_json(number: PhoneNumber) -> dict[str, Any]:
    return {
        "id": str(number.id),
        "org_id": str(number.org_id),
        "number": number.number,
        "created_at": format_rfc3339(number.created_at),
    }


@asynccontextmanager
async def _migrated(settings: Settings) -> AsyncIterator[Database]:
    """The configured database, migrated to head; disposed on exit."""
    database = Database(create_engine(settings.resolved_database_url, pool_size=2))
    try:
        await upgrade_to_head(database.engine)
        yield database
    finally:
        await database.dispose()


async def _in_transaction(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[dict[str, Any] | None]]
) -> dict[str, Any] | None:
    """Migrate, then run ``work`` in one transaction: all of it is written, or nothing."""
    async with _migrated(settings) as database, database.session(writes=True) as session:
        try:
            result = await work(session)
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        return result


def _run(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[dict[str, Any] | None]]
) -> None:
    try:
        result = asyncio.run(_in_transaction(settings, work))
    except ApiError as exc:
        reasons = "; ".join(f"{k}: {v}" for k, v in (exc.details or {}).items())
        _fail(reasons or exc.message)
    if result is not None:
        _emit(result)


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> None:
    async def migrate() -> None:
        async with _migrated(settings):
            pass

    asyncio.run(migrate())
    print("database is at the latest migration", file=sys.stderr)


def cmd_orgs_create(settings: Settings, args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> dict[str, Any]:
        org = await create_organization(
            session,
            name=args.name,
            plan=args.plan,
            rate_limit_per_minute=args.rate_limit,
            help_text=args.help_text,
            opt_out_confirmation=args.opt_out_confirmation,
        )
        return _org_json(org)

    _run(settings, work)


def cmd_orgs_update(settings: Settings, args: argparse.Namespace) -> None:
    from agentmessage.orgs.service import set_opt_out_confirmation

    async def work(session: AsyncSession) -> dict[str, Any]:
        text = None if args.opt_out_confirmation == "" else args.opt_out_confirmation
        return _org_json(await set_opt_out_confirmation(session, args.org, text))

    _run(settings, work)


def cmd_numbers_create(settings: Settings, args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> dict[str, Any]:
        return _number_json(await create_phone_number(session, org_id=args.org, number=args.number))

    _run(settings, work)


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> dict[str, Any]:
        created = await create_key(
            session, org_id=args.org, scopes=args.scopes.split(","), name=args.name
        )
        return {
            "id": str(created.key.id),
            "org_id": str(created.key.org_id),
            "key": created.plain,
            "name": created.key.name,
            "scopes": created.key.scopes.split(),
            "created_at": format_rfc3339(created.key.created_at),
        }

    _run(settings, work)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    """Create a demo organization, number, key and a few consents when the database is empty."""

    async def work(session: AsyncSession) -> dict[str, Any] | None:
        from agentmessage.consent.schemas import parse_capture
        from agentmessage.consent.service import capture

        existing = await session.scalar(select(func.count()).select_from(Organization))
        if existing:
            org = await session.scalar(select(Organization).order_by(Organization.created_at))
            assert org is not None
            print(
                "\nThe database already has data; the demo key was printed on the first run.\n"
                "Make a new key with:\n"
                f"  .venv/bin/agentmessage keys create --org {org.id} --scopes "
                f"{','.join(SCOPES)}\n",
                file=sys.stderr,
            )
            return None
        org = await create_organization(session, name="Demo Dental", plan="growth")
        number = await create_phone_number(session, org_id=org.id, number="+15550100001")
        key = await create_key(session, org_id=org.id, scopes=SCOPES, name="demo")
        caller = Caller(
            org_id=OrgScope(org.id),
            org_name=org.name,
            plan=org.plan,
            rate_limit_per_minute=None,
            key_id=key.key.id,
            scopes=frozenset(SCOPES),
        )
        now = utcnow()
        for offset, (contact, opted_in, method) in enumerate(
            [
                ("+15554443333", True, "checkbox"),
                ("+15554443334", True, "written"),
                ("+15554443335", False, "verbal"),
            ]
        ):
            await capture(
                session,
                caller,
                parse_capture(
                    {
                        "phone_number_id": str(number.id),
                        "contact_number": contact,
                        "opted_in": opted_in,
                        "evidence": {
                            "captured_at": format_rfc3339(now - timedelta(hours=3 - offset)),
                            "consent_method": method,
                            "agreement_text": "By signing up you agree to receive appointment "
                            "reminders from Demo Dental. Msg & data rates may apply. "
                            "Reply STOP to opt out.",
                            "ip_address": "203.0.113.42",
                            "form_url": "https://example.com/signup",
                        },
                    }
                ),
            )
        base = f"http://{args.host}:{args.port}"
        print(
            f"\nDemo organization 'Demo Dental' (plan growth, id {org.id}),\n"
            f"sender number {number.number} (id {number.id}).\n"
            f"API key (shown once): {key.plain}\n\n"
            "Try it:\n"
            f"  curl -s {base}/v1/consent -H 'Authorization: Bearer {key.plain}'\n"
            f"Docs: {base}/docs\n",
            file=sys.stderr,
        )
        return None

    _run(settings, work)


def cmd_consents_import(settings: Settings, args: argparse.Namespace) -> None:
    from agentmessage.files.importer import ImportUsageError, import_consents
    from agentmessage.files.progress import file_progress
    from agentmessage.kit.collector import settle_for_batches

    path = Path(args.file)
    if not path.is_file():
        _fail(f"{path}: no such file")
    size = path.stat().st_size

    async def run() -> dict[str, Any]:
        async with _migrated(settings) as database:
            settle_for_batches()
            with file_progress(f"importing {path.name}", size) as progress:
                report = await import_consents(
                    database,
                    org_id=args.org,
                    path=path,
                    phone_number_id=args.phone_number_id,
                    dry_run=args.dry_run,
                    progress=progress,
                )
            return report.as_json()

    try:
        summary = asyncio.run(run())
    except ImportUsageError as exc:
        _fail(str(exc))
    if summary["unknown_columns"]:
        print(
            f"ignored unknown column(s): {', '.join(summary['unknown_columns'])}", file=sys.stderr
        )
    verb = "would import" if summary["dry_run"] else "imported"
    print(
        f"{verb} {summary['accepted']:,} of {summary['rows']:,} rows; "
        f"{summary['rejected']:,} rejected"
        + (
            f" (see {summary['rejects_file']})"
            if summary["rejected"] and summary["rejects_file"]
            else ""
        ),
        file=sys.stderr,
    )
    _emit(summary)


def cmd_consents_export(settings: Settings, args: argparse.Namespace) -> None:
    from agentmessage.consent.repository import ListFilters
    from agentmessage.files.exporter import export_rows, write_export
    from agentmessage.kit.collector import settle_for_batches

    filters = ListFilters(
        contact_number=args.contact_number,
        phone_number_id=args.phone_number_id,
        opted_in=args.opted_in,
        since=args.since,
        consent_method=args.consent_method,
    )

    async def run(out: Any) -> int:
        async with _migrated(settings) as database:
            async with database.session(writes=False) as session:
                if await session.get(Organization, args.org) is None:
                    _fail("organization not found")
            settle_for_batches()
            rows = export_rows(database, OrgScope(args.org), filters)
            return await write_export(rows, out, args.format)

    if args.output:
        with Path(args.output).open("w", newline="", encoding="utf-8") as out:
            count = asyncio.run(run(out))
    else:
        count = asyncio.run(run(sys.stdout))
    print(f"exported {count:,} records", file=sys.stderr)


def cmd_deactivations_import(settings: Settings, args: argparse.Namespace) -> None:
    from agentmessage.deactivations.feed import FeedUsageError, import_feed
    from agentmessage.files.progress import file_progress
    from agentmessage.kit.collector import settle_for_batches

    path = Path(args.file)
    if not path.is_file():
        _fail(f"{path}: no such file")
    size = path.stat().st_size

    async def run() -> dict[str, Any]:
        async with _migrated(settings) as database:
            settle_for_batches()
            with file_progress(f"applying {path.name}", size) as progress:
                return (await import_feed(database, path, progress)).as_json()

    try:
        summary = asyncio.run(run())
    except FeedUsageError as exc:
        _fail(str(exc))
    _emit(summary)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    cmd_migrate(settings, args)
    uvicorn.run(
        "agentmessage.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_config=None,
        proxy_headers=False,
    )


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    """Send the outbox: until SIGINT/SIGTERM, or one drain with --once."""
    import signal

    from agentmessage.messaging.outbox.dispatcher import Dispatcher

    async def work() -> dict[str, Any] | None:
        from agentmessage.proof.keys import load_or_create
        from agentmessage.proof.service import Checkpointer, origin_prefix

        async with _migrated(settings) as database:
            dispatcher = Dispatcher.from_settings(database, settings)
            # The worker also signs the proof log's checkpoints while events arrive.
            checkpointer = Checkpointer(
                database,
                load_or_create(settings.resolved_signing_key_file),
                origin_prefix(settings.public_base_url),
                settings.checkpoint_interval_seconds,
            )
            if not args.once:
                checkpointer.start()
            try:
                return await _dispatch(dispatcher)
            finally:
                await checkpointer.stop()
                await dispatcher.provider.aclose()

    async def _dispatch(dispatcher: Dispatcher) -> dict[str, Any] | None:
        if args.once:
            report = await dispatcher.drain()
            return {
                "sent": report.sent,
                "retried": report.retried,
                "failed": report.failed,
                "refused": report.refused,
                "abandoned": report.abandoned,
            }
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, dispatcher.request_stop)
        print(
            f"dispatcher sending through {dispatcher.provider.name}; Ctrl-C to stop",
            file=sys.stderr,
        )
        await dispatcher.run()
        return None

    result = asyncio.run(work())
    if result is not None:
        _emit(result)


def cmd_proof_verify(args: argparse.Namespace) -> None:
    """Offline: the standalone verifier, no settings, database or server."""
    from agentmessage.proof import verify

    argv = [str(args.packet)]
    if args.public_key:
        argv += ["--public-key", str(args.public_key)]
    if args.checkpoint:
        argv += ["--checkpoint", str(args.checkpoint)]
    raise SystemExit(verify.main(argv))


def cmd_proof_audit(settings: Settings, args: argparse.Namespace) -> None:
    from agentmessage.files.progress import count_progress
    from agentmessage.proof.audit import audit

    saved = None
    if args.checkpoint:
        try:
            saved = Path(args.checkpoint).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{args.checkpoint}: {exc}")

    async def run() -> dict[str, Any]:
        async with _migrated(settings) as database:
            async with database.session(writes=False) as session:
                if await session.get(Organization, args.org) is None:
                    _fail("organization not found")
            with count_progress("auditing the log") as progress:
                report = await audit(database, args.org, saved_checkpoint=saved, progress=progress)
            return report.as_json()

    report = asyncio.run(run())
    _emit(report)
    if not report["ok"]:
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmessage",
        description="AgentMessage Consent: the system of record for SMS consent.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="apply pending migrations, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL)")
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser(
        "worker", help="send queued SMS (with AGENTMESSAGE_DISPATCHER=off on the servers)"
    )
    worker.add_argument("--once", action="store_true", help="send what is due, then exit")
    worker.set_defaults(handler=cmd_worker)

    migrate = commands.add_parser("migrate", help="apply pending migrations")
    migrate.set_defaults(handler=cmd_migrate)

    demo = commands.add_parser("demo", help="create demo data on an empty database")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(handler=cmd_demo)

    orgs = commands.add_parser("orgs", help="organizations").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    org_create = orgs.add_parser("create", help="create an organization")
    org_create.add_argument("--name", required=True)
    org_create.add_argument("--plan", default="payg", choices=list(PLANS))
    org_create.add_argument("--rate-limit", type=int, help="requests per minute (plan default)")
    org_create.add_argument("--help-text", help="the SMS answering HELP/INFO (a default if unset)")
    org_create.add_argument(
        "--opt-out-confirmation",
        help="the fixed SMS after an opt-out: no links, no marketing (a default if unset)",
    )
    org_create.set_defaults(handler=cmd_orgs_create)
    org_update = orgs.add_parser("update", help="change an organization's settings")
    org_update.add_argument("--org", type=_uuid, required=True, help="the organization's id")
    org_update.add_argument(
        "--opt-out-confirmation",
        required=True,
        help="the fixed SMS after an opt-out (no links, no marketing); '' for the default",
    )
    org_update.set_defaults(handler=cmd_orgs_update)

    numbers = commands.add_parser("numbers", help="sender phone numbers").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    number_create = numbers.add_parser("create", help="add a sender number")
    number_create.add_argument("--org", required=True, type=_uuid)
    number_create.add_argument("--number", required=True, help="E.164, e.g. +15550100001")
    number_create.set_defaults(handler=cmd_numbers_create)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    key_create = keys.add_parser("create", help="create an API key (printed once)")
    key_create.add_argument("--org", required=True, type=_uuid)
    key_create.add_argument("--scopes", required=True, help=f"comma-separated: {','.join(SCOPES)}")
    key_create.add_argument("--name")
    key_create.set_defaults(handler=cmd_keys_create)
    consents = commands.add_parser("consents", help="consent files").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    importing = consents.add_parser(
        "import", help="import consents from a CSV file (rejects to FILE.rejects.csv)"
    )
    importing.add_argument("file", metavar="FILE.csv")
    importing.add_argument("--org", required=True, type=_uuid)
    importing.add_argument("--phone-number-id", type=_uuid, help="sender number for every row")
    importing.add_argument("--dry-run", action="store_true", help="validate; write nothing")
    importing.set_defaults(handler=cmd_consents_import)
    exporting = consents.add_parser("export", help="export consents as CSV or JSON Lines")
    exporting.add_argument("--org", required=True, type=_uuid)
    exporting.add_argument("-o", "--output", help="file to write (default: stdout)")
    exporting.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    exporting.add_argument("--contact-number")
    exporting.add_argument("--phone-number-id", type=_uuid)
    exporting.add_argument("--opted-in", type=_boolean, metavar="true|false")
    exporting.add_argument("--since", type=_rfc3339, help="updated at or after (RFC 3339)")
    exporting.add_argument("--consent-method", choices=list(CONSENT_METHODS))
    exporting.set_defaults(handler=cmd_consents_export)

    deactivations = commands.add_parser(
        "deactivations", help="carrier deactivation feeds"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    feed = deactivations.add_parser(
        "import", help="apply a number,deactivated_at file to every organization"
    )
    feed.add_argument("file", metavar="FILE.csv")
    feed.set_defaults(handler=cmd_deactivations_import)

    proof = commands.add_parser("proof", help="the tamper-evident consent log").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    verifying = proof.add_parser(
        "verify", help="verify a proof packet offline (exit 0 only if every check passes)"
    )
    verifying.add_argument("packet", type=Path, help="a packet from GET /v1/consent/{id}/proof")
    verifying.add_argument(
        "--public-key",
        type=Path,
        help="the key you trust: a vkey line from /.well-known/agentmessage/log-keys, or PEM",
    )
    verifying.add_argument(
        "--checkpoint", type=Path, help="a checkpoint saved earlier (GET /v1/proof/checkpoint)"
    )
    verifying.set_defaults(handler=cmd_proof_verify, standalone=True)
    auditing = proof.add_parser(
        "audit", help="rebuild an organization's log from its events and check every checkpoint"
    )
    auditing.add_argument("--org", type=_uuid, required=True, help="the organization's id")
    auditing.add_argument(
        "--checkpoint", type=Path, help="a checkpoint saved earlier, also checked"
    )
    auditing.set_defaults(handler=cmd_proof_audit)
    return parser


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "standalone", False):
        args.handler(args)  # needs no settings (the offline verifier)
        return
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    # The format shows none of these, and the server writes a line per request:
    # no caller lookup (a walk up the stack), thread, process id (a system call
    # on Python 3.11) or process name per record (the logging HOWTO's
    # "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    settings = Settings()
    try:
        args.handler(settings, args)
    except MigrationRefused as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()
