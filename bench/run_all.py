"""Every benchmark of bench/, end to end, and bench/RESULTS.md written from their
figures: the machine and the date at the top, then one section per benchmark with
the command that reproduces it, each figure, its target and whether it was met.

    .venv/bin/python bench/run_all.py              # what `make bench` runs
    .venv/bin/python bench/run_all.py --quick      # small sizes: a smoke test
    .venv/bin/python bench/run_all.py --only list_latency --only throughput

The default runs the sizes of the performance issue (6): a million records where
it asks for them, 10 s wrk runs; expect the better part of an hour. ``--quick``
runs 20,000 records and 3 s wrk runs in a few minutes. Only a complete default run
writes bench/RESULTS.md; ``--quick`` and ``--only`` write under bench/out/ unless
``--output`` names a file.

Each benchmark runs even when one before it failed; a failure is written into its
section and the run exits non-zero. A missed target is a result, not a failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: make ``bench`` and ``tests`` importable as packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from tests.fixtures.postgres import BIN as POSTGRES_BIN

from bench import bulk, check, files, list_latency, memory, proof, throughput
from bench.common import FIGURE_HEADERS, Figure, PartialFailure, figure_cells

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "bench" / "RESULTS.md"
PARTIAL_RESULTS: Final = ROOT / "bench" / "out"
LIST_ITEM: Final = re.compile(r"^(- |\d+\. )")


class BenchmarkModule(Protocol):
    """What each benchmark script offers besides running on its own."""

    __doc__: str | None

    def parse_args(self, argv: Sequence[str] | None = None) -> argparse.Namespace: ...

    def run(self, args: argparse.Namespace) -> list[Figure]: ...


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str  # the script's name in bench/, for --only
    title: str
    module: BenchmarkModule
    full: tuple[str, ...]  # arguments of the default run
    quick: tuple[str, ...]  # arguments of --quick

    def argv(self, quick: bool) -> tuple[str, ...]:
        return self.quick if quick else self.full

    def command(self, quick: bool) -> str:
        return " ".join([".venv/bin/python", f"bench/{self.name}.py", *self.argv(quick)])


BENCHMARKS: Final = (
    Benchmark(
        "bulk",
        "Bulk ingest: POST /v1/consent/bulk against raw INSERTs (issue 6)",
        bulk,
        full=("--records", "20000", "--clients", "2"),
        quick=("--records", "2000", "--clients", "0"),
    ),
    Benchmark(
        "list_latency",
        "List at scale and the cost of meta.total (issue 6)",
        list_latency,
        full=("--records", "1000000", "--deep-page", "1000", "--rounds", "200"),
        quick=("--records", "20000", "--deep-page", "100", "--rounds", "20"),
    ),
    Benchmark(
        "throughput",
        "Read, write and inbound keyword throughput under wrk (issue 6)",
        throughput,
        full=("--records", "1000000", "--seconds", "10"),
        quick=("--records", "20000", "--seconds", "3"),
    ),
    Benchmark(
        "memory",
        "Server memory during bulk capture with 8 MiB bodies (issue 6)",
        memory,
        full=("--calls", "10", "--clients", "4"),
        quick=("--calls", "2", "--clients", "2"),
    ),
    Benchmark(
        "check",
        "Send decisions (issue 10)",
        check,
        full=("--records", "1000000", "--seconds", "10", "--rounds", "100"),
        quick=("--records", "20000", "--seconds", "3", "--rounds", "10"),
    ),
    Benchmark(
        "proof",
        "Proof log (issue 9)",
        proof,
        full=("--events", "1000000", "--rounds", "200"),
        quick=("--events", "20000", "--rounds", "20"),
    ),
    Benchmark(
        "files",
        "File commands (issue 11)",
        files,
        full=("--rows", "1000000"),
        quick=("--rows", "5000"),
    ),
)


@dataclass(frozen=True, slots=True)
class Section:
    benchmark: Benchmark
    figures: list[Figure]
    seconds: float
    error: str | None = None  # the traceback of a benchmark that failed


def run_benchmark(benchmark: Benchmark, quick: bool) -> Section:
    progress(f"{benchmark.name}: {benchmark.command(quick)}")
    started = time.perf_counter()
    try:
        args = benchmark.module.parse_args(list(benchmark.argv(quick)))
        figures = benchmark.module.run(args)
    except PartialFailure as failure:
        progress(f"{benchmark.name}: FAILED in part, see above")
        error = "\n".join(failure.errors)
        return Section(benchmark, failure.figures, time.perf_counter() - started, error)
    except Exception:
        error = traceback.format_exc()
        print(error, file=sys.stderr, flush=True)
        progress(f"{benchmark.name}: FAILED, see above")
        return Section(benchmark, [], time.perf_counter() - started, error)
    seconds = time.perf_counter() - started
    progress(f"{benchmark.name}: done in {duration(seconds)}")
    return Section(benchmark, figures, seconds)


# ---------------------------------------------------------------------------
# The machine


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on, read from the system itself."""
    return [
        ("CPU", f"{os.cpu_count()} cores (os.cpu_count), {cpu_model()}"),
        ("Memory", memory_total()),
        ("System", f"{os_name()}, Linux {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("PostgreSQL", f"{postgres_version()}: a throwaway cluster per benchmark, fsync off"),
        ("SQLite", f"{sqlite3.sqlite_version} (the library Python links), WAL"),
        ("wrk", first_line(["wrk", "-v"]).removeprefix("wrk ").split(" Copyright")[0]),
        ("Code", code_version()),
    ]


def cpu_model() -> str:
    for line in read_lines("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown model"


def memory_total() -> str:
    for line in read_lines("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.1f} GiB (/proc/meminfo MemTotal)"
    return "unknown"


def os_name() -> str:
    for line in read_lines("/etc/os-release"):
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def postgres_version() -> str:
    version = first_line([str(POSTGRES_BIN / "postgres"), "--version"])
    return version.removeprefix("postgres (PostgreSQL) ") or "unknown"


def code_version() -> str:
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    if not commit:
        return "unknown (no git)"
    changed = first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return f"commit {commit}" + (" with uncommitted changes" if changed else "")


def read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def first_line(command: list[str]) -> str:
    """The first line a command prints (stdout, else stderr); empty if it cannot run."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


# ---------------------------------------------------------------------------
# RESULTS.md


def render(
    sections: Sequence[Section],
    machine_rows: Sequence[tuple[str, str]],
    started_at: datetime,
    seconds: float,
    quick: bool,
    argv: Sequence[str],
) -> str:
    gated = [(s, f) for s in sections for f in s.figures if f.met is not None]
    met = sum(1 for _, f in gated if f.met)
    failed = [s for s in sections if s.error is not None]
    invocation = " ".join([".venv/bin/python bench/run_all.py", *argv])
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{invocation}` (`make bench` runs it without arguments) on "
        f"{started_at:%Y-%m-%d} at {started_at:%H:%M} UTC; the run took {duration(seconds)}. "
        "Generated: run it again rather than editing this file.",
        "",
    ]
    if quick:
        lines += [
            "**Quick mode: small sizes, a smoke test of the suite. These are not the "
            "issue's figures.** (The descriptions give the default sizes; each command "
            "gives the sizes that ran.)",
            "",
        ]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {cell(value)} |" for name, value in machine_rows]
    lines += [
        "",
        "The machine may be shared and noisy: targets are ratios or latencies measured "
        "against the same machine in the same run, and all load runs on 127.0.0.1.",
        "",
        "## Targets",
        "",
        f"{met} of {len(gated)} targets met"
        + (f"; {len(failed)} benchmark(s) FAILED: " if failed else ".")
        + ", ".join(s.benchmark.name for s in failed),
        "",
        "| benchmark | figure | result | target | verdict |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.benchmark.name} | {cell(f.name)} | {cell(f.result)} | {cell(f.target)} | "
        f"{verdict(f)} |"
        for s, f in gated
    ]
    for section in sections:
        lines += ["", *render_section(section, quick)]
    return "\n".join(lines) + "\n"


def render_section(section: Section, quick: bool) -> list[str]:
    benchmark = section.benchmark
    lines = [
        f"## {benchmark.title}",
        "",
        f"`{benchmark.command(quick)}` (took {duration(section.seconds)})",
        "",
        about(benchmark.module),
        "",
    ]
    if section.error is not None:
        last = section.error.strip().splitlines()[-1]
        lines += [f"**FAILED**: {cell(last)}", "", "```", *tail(section.error), "```", ""]
        if not section.figures:
            return lines
    lines += [
        "| " + " | ".join(FIGURE_HEADERS) + " |",
        "|" + "---|" * len(FIGURE_HEADERS),
    ]
    for figure in section.figures:
        cells = figure_cells(figure)
        cells[-1] = verdict(figure)
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return lines


def about(module: BenchmarkModule) -> str:
    """The module docstring's description: its paragraphs but the usage lines,
    each unwrapped to one line (a list keeps one line per item)."""
    paragraphs = []
    for paragraph in (module.__doc__ or "").strip().split("\n\n"):
        if paragraph.startswith("    ") or paragraph.startswith("Exits non-zero"):
            continue  # the usage and the exit status: the section gives its command
        items: list[str] = []
        for line in paragraph.splitlines():
            if not items or LIST_ITEM.match(line):
                items.append(line.strip())
            else:
                items[-1] += " " + line.strip()
        paragraphs.append("\n".join(items))
    return "\n\n".join(paragraphs)


def verdict(figure: Figure) -> str:
    return {None: "", True: "met", False: "**missed**"}[figure.met]


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def tail(text: str, lines: int = 25) -> list[str]:
    return text.strip().splitlines()[-lines:]


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def progress(message: str) -> None:
    print(f"[run_all] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--only",
        action="append",
        choices=[b.name for b in BENCHMARKS],
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument("--output", type=Path, help="where to write the results (Markdown)")
    return parser.parse_args(argv)


def output_of(args: argparse.Namespace) -> Path:
    """Only a complete run at the issue's sizes replaces bench/RESULTS.md."""
    if args.output is not None:
        return Path(args.output)
    if args.quick:
        return PARTIAL_RESULTS / "RESULTS-quick.md"
    if args.only:
        return PARTIAL_RESULTS / "RESULTS-partial.md"
    return RESULTS


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        progress("wrk is missing: run `make system-deps` (Debian package wrk)")
        return 2
    output = output_of(args)
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    sections = [run_benchmark(benchmark, args.quick) for benchmark in chosen]
    text = render(sections, machine(), started_at, time.perf_counter() - started, args.quick, argv)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    progress(f"wrote {output}")
    failed = [s.benchmark.name for s in sections if s.error is not None]
    if failed:
        progress(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
