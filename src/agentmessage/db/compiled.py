"""Core statements compiled once, run on the driver's connection directly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement


class Compiled:
    """A Core statement compiled once for ``dialect``: its SQL, and its parameters
    in the order the driver takes them.

    For a hot path that runs the same statement on every request: SQLAlchemy's
    per-execution work (cache key, result processing, greenlet hops) cost more
    than PostgreSQL's. The statement is still built from the models, so a
    column renamed there is renamed here. Values go to the driver as given: pass
    what it takes (JSON as text, UUIDs, aware datetimes).
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = compiled.string
        self._names: Sequence[str] = compiled.positiontup or ()
        # Values the statement carries itself ("opt_out" in a WHERE): the rest
        # are the caller's to give.
        self._fixed = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required
        }

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The parameters in order; a name missing from ``values`` raises KeyError."""
        return [values[name] if name in values else self._fixed[name] for name in self._names]
