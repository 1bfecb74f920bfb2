"""Benchmarks run against NEO4J_URI, or a throwaway local Neo4j (never the user's own data)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graph import LocalNeo4j, LocalNeo4jSettings, ProductGraph


@contextmanager
def bench_graph(heap_mb: int = 2048, pagecache_mb: int = 1024) -> Iterator[ProductGraph]:
    if os.environ.get("NEO4J_URI"):
        with ProductGraph.connect() as g:
            yield g
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="attrgraph-bench-") as home:
        local = LocalNeo4jSettings(home=Path(home), dist_dir=LocalNeo4jSettings.from_env().dist_dir, port=port,
                                   heap_mb=heap_mb, pagecache_mb=pagecache_mb)
        server = LocalNeo4j(local)
        server.start()
        try:
            with ProductGraph.connect(local=local) as g:
                yield g
        finally:
            server.stop()


def git_commit() -> str:
    try:
        import subprocess

        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return "unknown"
