"""Test session: a real Neo4j for every integration test.

The session starts its own local Neo4j (temporary data directory, a free port, the
jars cached under $ATTRGRAPH_HOME/dist) unless ATTRGRAPH_TEST_NEO4J_URI points at a
server that tests may wipe. Under CI=true a Neo4j that does not start fails the run.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from graph import LauncherError, LocalNeo4j, LocalNeo4jSettings, Neo4jSettings, ProductGraph

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "attrgraph" / "sample" / "myntra_sample.jsonl.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SessionNeo4j:
    settings: Neo4jSettings
    server: LocalNeo4j | None  # None when the tests use an external server


@pytest.fixture(scope="session")
def test_neo4j(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionNeo4j]:
    uri = os.environ.get("ATTRGRAPH_TEST_NEO4J_URI")
    if uri:
        yield SessionNeo4j(Neo4jSettings(uri=uri, user=os.environ.get("ATTRGRAPH_TEST_NEO4J_USER", "neo4j"),
                                      password=os.environ.get("ATTRGRAPH_TEST_NEO4J_PASSWORD")), None)
        return
    local = LocalNeo4jSettings(
        home=tmp_path_factory.mktemp("neo4j"), dist_dir=LocalNeo4jSettings.from_env().dist_dir,
        port=free_port(), heap_mb=1024, pagecache_mb=256,
    )
    server = LocalNeo4j(local)
    try:
        server.start()
    except LauncherError as e:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the test Neo4j did not start (CI=true, so this is a failure): {e}", pytrace=False)
        pytest.skip(f"the test Neo4j did not start: {e}")
    try:
        yield SessionNeo4j(Neo4jSettings(uri=local.uri, user="neo4j", password=local.password(), local=True), server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neo4j_settings(test_neo4j: SessionNeo4j) -> Neo4jSettings:
    return test_neo4j.settings


def _connect(settings: Neo4jSettings) -> ProductGraph:
    return ProductGraph.connect(settings.uri, settings.user, settings.password, settings.database)


@pytest.fixture()
def empty_graph(neo4j_settings: Neo4jSettings) -> Iterator[ProductGraph]:
    """A connected ProductGraph over an empty database, with the schema in place."""
    g = _connect(neo4j_settings)
    g.clear(confirm=True)
    g.ensure_schema()
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def sample_graph(neo4j_settings: Neo4jSettings) -> Iterator[ProductGraph]:
    """The shipped Myntra sample, ingested once per module (modules using it only read)."""
    g = _connect(neo4j_settings)
    g.clear(confirm=True)
    rep = g.ingest(SAMPLE, mapping="myntra")
    assert rep.rows_rejected == 0 and rep.products_created == rep.rows_read
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="session")
def sample_records() -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path
