"""Progress for long file commands: a rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY_SECONDS = 2.0


@contextmanager
def file_progress(label: str, total_bytes: int) -> Iterator[Callable[[int, int], None]]:
    """A callback ``(bytes read, rows done)``; the bar's ETA comes from bytes read."""
    if sys.stderr.isatty():
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:,} rows · {task.fields[rate]:,.0f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        started = time.monotonic()
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task(label, total=total_bytes or 1, rows=0, rate=0.0)

            def advance(done_bytes: int, rows: int) -> None:
                rate = rows / max(time.monotonic() - started, 1e-6)
                bar.update(task, completed=done_bytes, rows=rows, rate=rate)

            yield advance
        return

    started = last = time.monotonic()

    def report(done_bytes: int, rows: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PLAIN_EVERY_SECONDS and done_bytes < total_bytes:
            return
        last = now
        rate = rows / max(now - started, 1e-6)
        share = done_bytes / total_bytes if total_bytes else 1.0
        eta = (now - started) * (1 - share) / share if share else 0.0
        print(
            f"{label}: {rows:,} rows, {share:.0%}, {rate:,.0f} rows/s, ETA {eta:,.0f}s",
            file=sys.stderr,
            flush=True,
        )

    yield report


@contextmanager
def count_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A callback ``(done, total)`` for work counted in items rather than bytes."""
    if sys.stderr.isatty():
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task(label, total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or 1)

            yield advance
        return

    last = time.monotonic()

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PLAIN_EVERY_SECONDS and done < total:
            return
        last = now
        print(f"{label}: {done:,} of {total:,}", file=sys.stderr, flush=True)

    yield report
