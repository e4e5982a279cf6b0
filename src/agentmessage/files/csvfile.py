"""Reading consent CSV files as people make them: UTF-8 with or without a BOM,
comma or semicolon, quoted fields spanning lines, blank lines; and the one rule
that keeps a spreadsheet from running a cell of a CSV we write as a formula.

Formula cells. A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return (OWASP's list) as a formula, so a CSV we write
puts one ``'`` before such a cell (``neutralise``) and a CSV we read takes it off
again (``restore``). To keep that unambiguous, the rule counts the quotes already
there: written, a cell made of any number of ``'`` (none included) and then one
of those characters gains one ``'``; read, a cell made of one or more ``'`` and
then one of those characters loses one. So every text comes back as it was, a
genuine ``'=1`` (written ``''=1``) included. One exception: an E.164 number
(``+`` and digits only) is written as it is: a spreadsheet reads it as a number,
and a number can neither call nor reference anything.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _csv import Reader as CsvReader


class UnreadableFile(Exception):
    """The file cannot be read as a CSV of consents (the message says why)."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # physical line number where the row starts; the header is line 1
    values: dict[str, str]


_FORMULA_START = frozenset("=+-@\t\r")
_E164_SHAPE = re.compile(r"\+[0-9]+")


def neutralise(cell: str) -> str:
    """``cell`` as a CSV we write holds it: see the module's docstring."""
    first = cell[:1]
    if first in _FORMULA_START:
        return cell if _E164_SHAPE.fullmatch(cell) else "'" + cell
    if first == "'" and cell.lstrip("'")[:1] in _FORMULA_START:
        return "'" + cell
    return cell


def restore(cell: str) -> str:
    """The text ``neutralise`` wrote as ``cell``."""
    if cell[:1] == "'" and cell.lstrip("'")[:1] in _FORMULA_START:
        return cell[1:]
    return cell


def fingerprint(path: Path) -> str:
    """The file's SHA-256, after checking that all of it can be read: UTF-8 text
    throughout, and no quote opened that merges the rows after it (see _Quotes).

    One pass before anything is imported, so that a file with bad bytes at line
    900,000 is refused as surely as one with bad bytes at line 2, and with the
    right line (the decoder of a text stream reads ahead of the rows).
    """
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    quotes = _Quotes()
    lines_before = 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UnreadableFile(f"cannot open {path}: {exc.strerror}") from None
    with handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = lines_before + chunk.count(b"\n", 0, max(exc.start, 0)) + 1
                raise UnreadableFile(f"line {line} is not UTF-8 text") from None
            lines_before += chunk.count(b"\n")
            quotes.feed(text)
        try:
            quotes.feed(decoder.decode(b"", final=True))
        except UnicodeDecodeError:
            raise UnreadableFile(f"line {lines_before + 1} is not UTF-8 text") from None
        quotes.close()
    return digest.hexdigest()


_END = "end of file"  # a line with no quote, delimiter or line break (see _Quotes)
_REFUSED = 'the file was refused (close the quote, or double it ("") if it is part of the text)'


class _Quotes:
    r"""Follows the file's quoting as ``read_rows``'s reader will read it, so that a
    quote running a row on into the rows after it refuses the file before any row
    is used, naming the line where that row starts:

    - a quote never closed: the rest of the file would be one field;
    - a quote closed only on a later line, and irregularly (a quote followed by
      more text, as in ``,"Reminders"`` read from inside the quoted field): the
      lines in between would be one row;
    - a quoted field still open past the csv module's field limit (the reader
      would stop there, after importing the rows before it).

    A field that spans lines and closes properly (``"Signed form,\r\npage 2"``)
    is a text with line breaks, as before; so is lenient quoting within one line
    (``"abc"def``).

    It is fed the text in chunks and parses complete lines only, and only where a
    quote is, or still is, open: a chunk without a quote is counted, not parsed. A
    row still open at the end of a chunk is parsed again, from its first line,
    with the next chunk; the field limit bounds how long such a row can get.
    """

    def __init__(self) -> None:
        self._started = False
        self._header: list[str] | None = None
        self._delimiter = ","
        self._tail = ""  # the text after the last line break fed so far
        self._open = ""  # the lines of a row still inside a quote at the last line break
        self._line = 1  # the number of the first line not yet checked
        self._done = False  # set at a line the reader cannot read: nothing after it is used

    def feed(self, text: str) -> None:
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")  # as the reader's utf-8-sig does
        # Lines end where the reader's end (CR, LF or CRLF); a CR at the very end may
        # be the first half of a CRLF, so it waits for the next chunk.
        cut = _last_line_end(text)
        quiet = self._header is not None and not self._open
        if cut and quiet and '"' not in text and '"' not in self._tail:
            # Nothing to parse: count the lines, without copying a megabyte of text.
            joined = self._tail[-1:] == "\r" and text[:1] == "\n"  # one CRLF, not two
            self._line += _breaks(self._tail) + _breaks(text, cut) - joined
            self._tail = text[cut:]
            return
        text = self._tail + text
        cut = _last_line_end(text)
        self._tail = text[cut:]
        self._check(text[:cut], last=False)

    def close(self) -> None:
        """Raises UnreadableFile if a quote is still open at the end of the file."""
        self._check(self._tail, last=True)
        self._tail = ""

    def _check(self, text: str, *, last: bool) -> None:
        if self._done:
            return
        if self._header is None:
            if not text:
                return
            header_line = io.StringIO(text, newline="").readline()
            self._delimiter, self._header = _header(header_line)
            text = text[len(header_line) :]
            self._line = 2
        if not self._open and '"' not in text:
            self._line += _breaks(text)
            return
        lines = io.StringIO(self._open + text, newline="").readlines()
        reader = _reader(itertools.chain(lines, (_END,)), self._delimiter)
        start = 0  # the index of the current row's first line
        try:
            for _values in reader:
                end = reader.line_num
                if end > len(lines):  # the row that read the end marker
                    break
                if end - start > 1:
                    self._check_closing(lines[start:end], self._line + start)
                start = end
        except csv.Error:
            reached = min(reader.line_num, len(lines)) - 1  # where the field outgrew it
            if reached > start:
                raise UnreadableFile(
                    f"line {self._line + start}: the quote that opens "
                    f"{self._field(lines[start])} of this row is still open on line "
                    f"{self._line + reached}, past the {csv.field_size_limit():,} characters "
                    f"a field may hold; {_REFUSED}"
                ) from None
            # A line the reader cannot read (one huge field): the import stops there
            # and says so, and nothing after it is used.
            self._done = True
            return
        if start == len(lines):
            self._open = ""
            self._line += len(lines)
        elif not last:  # the last row is inside a quote: it goes on in the next chunk
            self._open = "".join(lines[start:])
            self._line += start
        else:
            line, last_line = self._line + start, self._line + len(lines) - 1
            fate = (
                f", so every line after it, to the end of the file (line {last_line}), would "
                "be read into that field"
                if last_line > line
                else " before the file ends"
            )
            raise UnreadableFile(
                f"line {line}: the quote that opens {self._field(lines[start])} of this row "
                f"is never closed{fate}; {_REFUSED}"
            )

    def _check_closing(self, lines: list[str], line: int) -> None:
        """A row over several lines whose quote closes irregularly on a later one."""
        reader = csv.reader(lines, delimiter=self._delimiter, strict=True)
        try:
            for _values in reader:
                pass
        except csv.Error:
            if reader.line_num > 1:  # on its first line it is lenient quoting, as before
                closed = line + reader.line_num - 1
                raise UnreadableFile(
                    f"line {line}: the quote that opens {self._field(lines[0])} of this row "
                    f"closes only on line {closed}, and irregularly (a quote followed by more "
                    f"text), so lines {line} to {closed} would be read as one row; {_REFUSED}"
                ) from None

    def _field(self, first_line: str) -> str:
        """The field still inside a quote at the end of a row's first line."""
        values = next(_reader([first_line, _END], self._delimiter))
        index = len(values) - 1
        name = self._header[index] if self._header and index < len(self._header) else ""
        return f"the {name} field" if name else f"field {index + 1}"


_LONE_CR = re.compile(r"\r(?!\n)")


def _last_line_end(text: str) -> int:
    """Where the last complete line of ``text`` ends (0: none does); a CR at the
    very end does not count, as it may be the first half of a CRLF."""
    return max(text.rfind("\n"), text.rfind("\r", 0, len(text) - 1)) + 1


def _breaks(text: str, end: int | None = None) -> int:
    """How many line ends the reader sees in ``text[:end]`` (CR, LF or CRLF)."""
    end = len(text) if end is None else end
    breaks = text.count("\n", 0, end)
    if "\r" not in text or not _LONE_CR.search(text, 0, end):  # quick scans, usually
        return breaks
    return breaks + len(_LONE_CR.findall(text, 0, end))


def _header(line: str) -> tuple[str, list[str]]:
    """The delimiter a header line uses, and its column names (lower-cased, trimmed)."""
    delimiter = ";" if line.count(";") > line.count(",") else ","
    return delimiter, [
        name.strip().lower() for name in next(csv.reader([line], delimiter=delimiter))
    ]


def _reader(lines: Iterable[str], delimiter: str) -> CsvReader:
    # Lenient: a quote followed by more text (``"abc"def``) is read as text.
    return csv.reader(lines, delimiter=delimiter, strict=False)


def open_text(path: Path) -> tuple[io.TextIOWrapper, BinaryIO]:
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise UnreadableFile(f"cannot open {path}: {exc.strerror}") from None
    # utf-8-sig drops a BOM when there is one; strict decoding names bad bytes.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline=""), raw


def read_rows(text: io.TextIOWrapper) -> tuple[list[str], Iterator[Row]]:
    """The header (lower-cased, trimmed) and the data rows with their line numbers,
    each cell trimmed and ``restore``d."""
    try:
        header_line = text.readline()
    except UnicodeDecodeError:
        raise UnreadableFile("the file is not UTF-8 text") from None
    if not header_line.strip():
        raise UnreadableFile("the file is empty: the first line must name the columns")
    delimiter, header = _header(header_line)
    reader = _reader(text, delimiter)

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
            cells = {
                name: restore(value.strip()) for name, value in zip(header, values, strict=False)
            }
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
