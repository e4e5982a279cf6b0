"""Tables the database itself keeps append-only: triggers refuse UPDATE and DELETE.

Migration 0001 creates the PostgreSQL trigger function
``agentmessage_append_only()`` that the triggers call.
"""

from __future__ import annotations

from alembic import op


def forbid_changes(table: str) -> None:
    """Triggers on ``table`` refusing UPDATE and DELETE, on PostgreSQL and SQLite."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION agentmessage_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )
