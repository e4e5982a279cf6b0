"""Reading consent CSV files as people make them: UTF-8 with or without a BOM,
comma or semicolon, quoted fields spanning lines, blank lines."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


class UnreadableFile(Exception):
    """The file cannot be read as a CSV of consents (the message says why)."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # physical line number where the row starts; the header is line 1
    values: dict[str, str]


def fingerprint(path: Path) -> str:
    """The file's SHA-256, after checking that all of it is UTF-8.

    One pass before anything is imported, so that a file with bad bytes at line
    900,000 is refused as surely as one with bad bytes at line 2, and with the
    right line (the decoder of a text stream reads ahead of the rows).
    """
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before = 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UnreadableFile(f"cannot open {path}: {exc.strerror}") from None
    with handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = lines_before + chunk.count(b"\n", 0, max(exc.start, 0)) + 1
                raise UnreadableFile(f"line {line} is not UTF-8 text") from None
            lines_before += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise UnreadableFile(f"line {lines_before + 1} is not UTF-8 text") from None
    return digest.hexdigest()


def open_text(path: Path) -> tuple[io.TextIOWrapper, BinaryIO]:
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise UnreadableFile(f"cannot open {path}: {exc.strerror}") from None
    # utf-8-sig drops a BOM when there is one; strict decoding names bad bytes.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline=""), raw


def read_rows(text: io.TextIOWrapper) -> tuple[list[str], Iterator[Row]]:
    """The header (lower-cased, trimmed) and the data rows with their line numbers."""
    try:
        header_line = text.readline()
    except UnicodeDecodeError:
        raise UnreadableFile("the file is not UTF-8 text") from None
    if not header_line.strip():
        raise UnreadableFile("the file is empty: the first line must name the columns")
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    header = [name.strip().lower() for name in next(csv.reader([header_line], delimiter=delimiter))]
    reader = csv.reader(text, delimiter=delimiter, strict=False)

    def rows() -> Iterator[Row]:
        consumed = 1  # the header
        while True:
            start = consumed + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise UnreadableFile(f"line {start} is not UTF-8 text") from None
            except csv.Error as exc:
                raise UnreadableFile(f"line {start}: {exc}") from None
            consumed = reader.line_num + 1
            if not any(v.strip() for v in values):
                continue  # a blank line is not a row
            cells = {name: value.strip() for name, value in zip(header, values, strict=False)}
            if len(values) > len(header):
                cells["__extra__"] = str(len(values) - len(header))
            yield Row(line=start, values=cells)

    return header, rows()


REJECT_COLUMNS = ("line", "field", "reason")


def rejects_path(path: Path) -> Path:
    return path.with_name(path.stem + ".rejects.csv")


class RejectsFile:
    """``FILE.rejects.csv``: line, field, reason. Appended before each commit; on a
    resume, trimmed back to the rows at or before the checkpoint."""

    def __init__(self, path: Path, *, resume_after: int | None, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        self.count = 0
        self._pending: list[tuple[int, str, str]] = []
        if not enabled:
            return
        kept: list[list[str]] = []
        if resume_after is not None and path.exists():
            with path.open(newline="", encoding="utf-8") as handle:
                kept = [r for r in list(csv.reader(handle))[1:] if r and int(r[0]) <= resume_after]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(REJECT_COLUMNS)
            writer.writerows(kept)
        self.count = len(kept)

    def add(self, line: int, details: dict[str, str]) -> None:
        for name, reason in details.items():
            self._pending.append((line, name, reason))

    def flush(self) -> int:
        """Write what this batch rejected; how many rows that was."""
        rows = len({line for line, _, _ in self._pending})
        if self.enabled and self._pending:
            with self.path.open("a", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows(sorted(self._pending))
        self._pending.clear()
        self.count += rows
        return rows
