"""Where Neo4j is and how to reach it.

Resolution order: explicit arguments, then the environment (``NEO4J_URI``,
``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``), then the local Neo4j that
attrgraph runs itself under ``$ATTRGRAPH_HOME`` (default ``~/.attrgraph``).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LOCAL_PORT = 7687
DEFAULT_HOST = "127.0.0.1"


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


@dataclass(frozen=True)
class Neo4jSettings:
    """Connection settings. ``repr`` never shows the password."""

    uri: str
    user: str
    password: str | None
    database: str | None = None
    local: bool = False

    def __repr__(self) -> str:  # credentials stay out of logs and reports
        return f"Neo4jSettings(uri={self.uri!r}, user={self.user!r}, database={self.database!r}, local={self.local})"

    __str__ = __repr__

    @classmethod
    def resolve(
        cls,
        uri: str | None = None,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        local: LocalNeo4jSettings | None = None,
    ) -> "Neo4jSettings":
        uri = uri or os.environ.get("NEO4J_URI")
        database = database or os.environ.get("NEO4J_DATABASE") or None
        if uri:
            return cls(
                uri=uri,
                user=user or os.environ.get("NEO4J_USER", "neo4j"),
                password=password if password is not None else os.environ.get("NEO4J_PASSWORD"),
                database=database,
            )
        local = local or LocalNeo4jSettings.from_env()
        return cls(uri=local.uri, user="neo4j", password=local.password(), database=database, local=True)
