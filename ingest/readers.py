"""Streaming readers for catalog files, one registry entry per format.

A reader yields ``(line_number, record)`` for good rows and ``(line_number, RowError)``
for rows it cannot parse, so one bad line is reported alone and never stops the file.
Memory stays flat: nothing is read ahead beyond the current row.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import IngestError, RowError

Row = tuple[int, Any]  # (line, record or RowError)
Reader = Callable[..., Iterator[Row]]

READERS: dict[str, Reader] = {}
MAX_LINE_BYTES = 16 * 1024 * 1024
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes the decoder could not read, kept by errors="surrogateescape"


def register_reader(name: str) -> Callable[[Reader], Reader]:
    def deco(fn: Reader) -> Reader:
        READERS[name] = fn
        return fn

    return deco


class CountingReader(io.RawIOBase):
    """Counts bytes read from the (compressed) file, for progress bars."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.bytes_read = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.raw.readinto(b)
        self.bytes_read += n or 0
        return n or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_binary(path: Path, counter: CountingReader | None = None) -> BinaryIO:
    raw: BinaryIO = counter if counter is not None else open(path, "rb")  # type: ignore[assignment]
    buffered = io.BufferedReader(raw) if counter is not None else raw
    if path.name.endswith(".gz"):
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    return buffered


def format_of(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".gzip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    if ext in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if ext in ("csv", "tsv"):
        return "csv"
    raise IngestError(f"{path}: cannot tell the format from the name; set 'format:' in the mapping (valid: {', '.join(sorted(READERS))})")


def get_reader(name: str) -> Reader:
    try:
        return READERS[name]
    except KeyError:
        raise IngestError(f"unknown input format {name!r}; valid: {', '.join(sorted(READERS))}") from None


@register_reader("jsonl")
def read_jsonl(stream: BinaryIO, **_: Any) -> Iterator[Row]:
    for lineno, raw in enumerate(stream, start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield lineno, RowError(None, f"line is {len(raw)} bytes long (at most {MAX_LINE_BYTES})")
            continue
        if not raw.strip():
            continue
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield lineno, RowError(None, f"not UTF-8 (byte {e.start})")
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            yield lineno, RowError(None, f"malformed JSON: {e.msg} at column {e.colno}")
            continue
        yield lineno, rec


@register_reader("csv")
def read_csv(stream: BinaryIO, *, delimiter: str = ",", quotechar: str = '"', encoding: str = "utf-8",
             **_: Any) -> Iterator[Row]:
    """CSV with a header row. Empty header cells are named ``_col<N>`` (1-based)."""
    # Undecodable bytes become lone surrogates and are caught per row below: a strict decoder would fail on
    # the whole chunk it decodes ahead (8 KiB), reporting a wrong line and dropping the good rows before it.
    text = io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")
    lines = _LineCounter(text)
    reader = csv.reader(lines, delimiter=delimiter, quotechar=quotechar, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except (csv.Error, UnicodeDecodeError) as e:
        raise IngestError(f"cannot read the CSV header: {e}") from None
    if _UNDECODABLE.search("".join(header)):
        raise IngestError(f"cannot read the CSV header: not {encoding}")
    if header and header[0].startswith("\ufeff"):  # byte order mark
        header[0] = header[0][1:]
    names = [h.strip() or f"_col{i + 1}" for i, h in enumerate(header)]
    seen: set[str] = set()
    for i, n in enumerate(names):  # make duplicate headers distinct
        if n in seen:
            n = f"{n}_{i + 1}"
            while n in seen or n in names[i + 1:]:
                n += "_"
            names[i] = n
        seen.add(n)
    while True:
        start = lines.line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start, RowError(None, f"malformed CSV: {e}")
            continue
        except UnicodeDecodeError as e:
            yield start, RowError(None, f"not {encoding}: {e.reason}")
            return  # the decoder cannot resynchronise reliably
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        bad = _UNDECODABLE.search("".join(row))
        if bad:
            yield start, RowError(None, f"not {encoding} (byte 0x{ord(bad.group()) - 0xDC00:02x})")
            continue
        if len(row) != len(names):
            yield start, RowError(None, f"malformed CSV: {len(row)} fields, the header has {len(names)}")
            continue
        yield start, dict(zip(names, row))


class _LineCounter:
    """Iterates text lines for csv.reader while counting physical lines (quoted newlines included)."""

    def __init__(self, text: io.TextIOBase):
        self.text, self.line = text, 0

    def __iter__(self) -> "_LineCounter":
        return self

    def __next__(self) -> str:
        s = self.text.readline(MAX_LINE_BYTES)
        if not s:
            raise StopIteration
        self.line += 1
        return s
