"""Where Neo4j is and how to reach it.

Resolution order: explicit arguments, then the environment (``NEO4J_URI``,
``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``), then the local Neo4j that
attrgraph runs itself under ``$ATTRGRAPH_HOME`` (default ``~/.attrgraph``).

Clusters and Aura: ``NEO4J_URI`` may use any of the driver's schemes (``neo4j://`` routes reads
to followers and writes to the leader; ``+s`` adds TLS verified against the system's CAs, ``+ssc``
TLS without verification). ``NEO4J_TRUSTED_CA`` names a PEM file of the CA(s) that signed the
server's certificate (a private CA); ``NEO4J_MAX_RETRY_SECONDS`` is how long a transaction is
retried across leader changes and restarts (default 30).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .errors import GraphError

DEFAULT_LOCAL_PORT = 7687
DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_RETRY_SECONDS = 30.0
URI_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


class SettingsError(GraphError, ValueError):
    """A connection setting (argument or environment variable) has a value that cannot work."""


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, and tighten it to 0700 if it exists and is
    ours: data, model and database directories are readable by their owner only."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if p.stat().st_uid == os.getuid():
            os.chmod(p, 0o700)
    except OSError:  # a file system without modes: leave it
        pass
    return p


def attrgraph_home() -> Path:
    return Path(os.environ.get("ATTRGRAPH_HOME", Path.home() / ".attrgraph")).expanduser()


@dataclass(frozen=True)
class LocalNeo4jSettings:
    """The Neo4j that :class:`graph.server.LocalNeo4j` runs.

    ``home`` holds ``data/``, ``logs/``, the pid file and the generated password.
    ``dist_dir`` holds the built launcher and Neo4j jars; it is shared between homes
    so that a second instance (e.g. the test session's) does not rebuild.
    """

    home: Path
    dist_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_LOCAL_PORT
    heap_mb: int = 1024
    pagecache_mb: int = 512
    start_timeout_s: float = 180.0
    # Further Neo4j settings for the launcher (e.g. ``dbms.ssl.policy.bolt.*`` and
    # ``server.bolt.tls_level`` for TLS on Bolt), as ``((name, value), ...)`` or a dict.
    extra_config: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        items = self.extra_config.items() if isinstance(self.extra_config, dict) else self.extra_config
        pairs = tuple((str(k), str(v)) for k, v in items)
        for k, v in pairs:
            if not k or any(c in k for c in "=\n\r\\ #!:") or any(c in v for c in "\n\r\\"):
                raise SettingsError(f"extra Neo4j setting {k!r} = {v!r}: a name is a dotted setting name, and "
                                    "neither may contain a line break or a backslash")
        object.__setattr__(self, "extra_config", pairs)

    @classmethod
    def from_env(cls, home: Path | None = None, port: int | None = None) -> "LocalNeo4jSettings":
        base = attrgraph_home()
        home = Path(home) if home is not None else Path(os.environ.get("ATTRGRAPH_NEO4J_HOME", base / "neo4j"))
        dist = Path(os.environ.get("ATTRGRAPH_DIST_DIR", base / "dist"))
        if port is None:
            port = int(os.environ.get("ATTRGRAPH_NEO4J_PORT", DEFAULT_LOCAL_PORT))
        return cls(
            home=home,
            dist_dir=dist,
            port=port,
            heap_mb=int(os.environ.get("ATTRGRAPH_NEO4J_HEAP_MB", 1024)),
            pagecache_mb=int(os.environ.get("ATTRGRAPH_NEO4J_PAGECACHE_MB", 512)),
        )

    @property
    def uri(self) -> str:
        return f"bolt://{self.host}:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    def password(self, create: bool = False) -> str | None:
        """The local instance's password; generated (mode 0600) on first start."""
        f = self.password_file
        if f.exists():
            return f.read_text(encoding="utf-8").strip()
        if not create:
            return None
        private_dir(self.home)
        pw = "ag-" + secrets.token_urlsafe(18)
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(pw)
        return pw


def _env_retry_seconds() -> float | None:
    raw = os.environ.get("NEO4J_MAX_RETRY_SECONDS")
    if raw is None or not raw.strip():
        return None
    try:
        v = float(raw)
    except ValueError:
        v = float("nan")
    if not v >= 0 or v == float("inf"):
        raise SettingsError(f"NEO4J_MAX_RETRY_SECONDS must be a number of seconds >= 0, got {raw!r}")
    return v


@dataclass(frozen=True)
class Neo4jSettings:
    """Connection settings. ``repr`` never shows the password.

    ``trusted_ca``: a PEM file with the CA certificate(s) to verify the server against (instead of the
    system's); ``max_retry_seconds``: how long the driver retries a transaction (None: 30 s)."""

    uri: str
    user: str
    password: str | None
    database: str | None = None
    local: bool = False
    trusted_ca: str | None = None
    max_retry_seconds: float | None = None

    def __post_init__(self) -> None:
        scheme = self.uri.split("://", 1)[0].lower() if "://" in self.uri else ""
        if scheme not in URI_SCHEMES:
            raise SettingsError(f"Neo4j URI {self.uri!r}: the scheme must be one of {', '.join(URI_SCHEMES)} "
                                "(neo4j+s://... for Aura)")
        if self.max_retry_seconds is not None and not self.max_retry_seconds >= 0:
            raise SettingsError(f"max_retry_seconds must be >= 0, got {self.max_retry_seconds!r}")

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0].lower()

    def __repr__(self) -> str:  # credentials stay out of logs and reports
        extra = f", trusted_ca={self.trusted_ca!r}" if self.trusted_ca else ""
        return (f"Neo4jSettings(uri={self.uri!r}, user={self.user!r}, database={self.database!r}, "
                f"local={self.local}{extra})")

    __str__ = __repr__

    @classmethod
    def resolve(
        cls,
        uri: str | None = None,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        local: LocalNeo4jSettings | None = None,
        *,
        trusted_ca: str | None = None,
        max_retry_seconds: float | None = None,
    ) -> "Neo4jSettings":
        uri = uri or os.environ.get("NEO4J_URI")
        database = database or os.environ.get("NEO4J_DATABASE") or None
        trusted_ca = trusted_ca or os.environ.get("NEO4J_TRUSTED_CA") or None
        if max_retry_seconds is None:
            max_retry_seconds = _env_retry_seconds()
        if uri:
            return cls(
                uri=uri,
                user=user or os.environ.get("NEO4J_USER", "neo4j"),
                password=password if password is not None else os.environ.get("NEO4J_PASSWORD"),
                database=database,
                trusted_ca=trusted_ca,
                max_retry_seconds=max_retry_seconds,
            )
        local = local or LocalNeo4jSettings.from_env()
        return cls(uri=local.uri, user="neo4j", password=local.password(), database=database, local=True,
                   trusted_ca=trusted_ca, max_retry_seconds=max_retry_seconds)
