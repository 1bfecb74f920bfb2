"""Exceptions of the gnn package (one root: :class:`GnnError`)."""


class GnnError(Exception):
    """Root of every error raised by :mod:`gnn`."""


class SnapshotError(GnnError):
    """A snapshot or feature store is missing, incomplete or inconsistent."""


class EncoderError(GnnError):
    """A text encoder is unknown, or its model cannot be loaded offline."""


class KgeError(GnnError):
    """A knowledge-graph embedding model is unknown or misconfigured."""


class MissingExtra(GnnError):
    """An optional dependency (the `ml` extra) is not installed."""
