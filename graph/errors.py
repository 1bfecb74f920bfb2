"""Exceptions of the graph package (one root: :class:`GraphError`)."""


class GraphError(Exception):
    """Root of every error raised by :mod:`graph`."""


class LauncherError(GraphError):
    """The local Neo4j could not be built, started or stopped."""


class ConnectionFailed(GraphError):
    """No Neo4j answered at the configured address, or it refused the credentials."""
