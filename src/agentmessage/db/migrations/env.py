"""Alembic environment: always handed a live connection by ``db/migrate.py``."""

from __future__ import annotations

from alembic import context

from agentmessage.db import models  # noqa: F401  (registers the tables)
from agentmessage.db.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `agentmessage migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
