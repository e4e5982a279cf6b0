"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.schema.hooks``): one more check."""

from __future__ import annotations

from typing import Any

import schemathesis

# What a leaked exception or query looks like in a body.
_TRACE = ("Traceback (most recent call last)", 'File "/', "site-packages", '.py", line')
_SQL = (
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "sqlite3.",
    "IntegrityError",
    "OperationalError",
    "ProgrammingError",
    "SELECT ",
    "INSERT INTO",
    "UPDATE consent",
    "DELETE FROM",
    "psycopg",
)


@schemathesis.check
def no_trace_or_sql(ctx: Any, response: Any, case: Any) -> bool | None:
    """No response shows a stack trace; no error response shows SQL or a driver name.

    (A success may echo what the caller stored, SQL-looking text included.)
    """
    text = response.text if isinstance(response.text, str) else ""
    leaked = [marker for marker in _TRACE if marker in text]
    if response.status_code >= 400:
        leaked += [marker for marker in _SQL if marker in text]
    if leaked:
        raise AssertionError(f"the response body shows {leaked!r}")
    return None
