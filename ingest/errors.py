"""Exceptions of the ingest package (one root: :class:`IngestError`)."""

from __future__ import annotations

from dataclasses import dataclass


class IngestError(Exception):
    """Root of every error raised by :mod:`ingest`."""


class ConfigError(IngestError):
    """A mapping file is invalid. Names the file, the line and the key."""

    def __init__(self, file: str, line: int | None, key: str, message: str):
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}")


@dataclass(frozen=True)
class Rejection:
    """One input row that was not ingested, and why."""

    file: str
    line: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        f = f" field {self.field!r}:" if self.field else ""
        return f"{self.file}:{self.line}:{f} {self.reason}"


class RowError(IngestError):
    """Raised while mapping one row; becomes a :class:`Rejection`, never aborts the ingest."""

    def __init__(self, field: str | None, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}" if field else reason)
