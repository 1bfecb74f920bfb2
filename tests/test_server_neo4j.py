"""The local Neo4j launcher: idempotent start, stale pid files, busy ports, loopback only, secrets."""

from __future__ import annotations

import os
import stat
import subprocess

import psutil
import pytest

from graph import ConnectionFailed, LauncherError, LocalNeo4j, LocalNeo4jSettings, Neo4jSettings, ProductGraph
from tests.conftest import SessionNeo4j, free_port

pytestmark = pytest.mark.neo4j


@pytest.fixture()
def server(test_neo4j: SessionNeo4j) -> LocalNeo4j:
    if test_neo4j.server is None:
        pytest.skip("the tests use an external Neo4j (ATTRGRAPH_TEST_NEO4J_URI): no launcher to test")
    return test_neo4j.server


def test_start_twice_is_harmless(server: LocalNeo4j) -> None:
    before = server.status()
    assert before.running
    again = server.start()
    assert again.running and again.pid == before.pid


def test_listens_on_loopback_only(server: LocalNeo4j) -> None:
    st = server.status()
    conns = [c for c in psutil.Process(st.pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    assert conns, "the Neo4j process listens on nothing"
    assert {c.laddr.ip.removeprefix("::ffff:") for c in conns} == {"127.0.0.1"}
    assert server.settings.port in {c.laddr.port for c in conns}


def test_password_file_is_private_and_never_printed(server: LocalNeo4j) -> None:
    mode = stat.S_IMODE(os.stat(server.settings.password_file).st_mode)
    assert mode == 0o600
    pw = server.settings.password()
    assert pw and len(pw) >= 16
    s = Neo4jSettings(uri=server.settings.uri, user="neo4j", password=pw)
    assert pw not in repr(s) and pw not in str(s)
    assert pw not in server.log_tail(10_000)


def test_busy_port_gives_a_clear_error(server: LocalNeo4j, tmp_path) -> None:
    other = LocalNeo4j(LocalNeo4jSettings(home=tmp_path / "other", dist_dir=server.settings.dist_dir,
                                          port=server.settings.port))
    with pytest.raises(LauncherError, match=f"port {server.settings.port} .* already in use"):
        other.start()
    assert not (tmp_path / "other" / "run" / "neo4j.pid").exists()


def test_stale_pid_file_is_recognised_and_cleaned(server: LocalNeo4j, tmp_path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    s = LocalNeo4jSettings(home=tmp_path / "stale", dist_dir=server.settings.dist_dir, port=free_port())
    other = LocalNeo4j(s)
    other.pid_file.parent.mkdir(parents=True)
    other.pid_file.write_text(str(dead.pid))
    st = other.status()
    assert not st.running and "stale pid file" in st.message
    # a live pid that is not our Neo4j (this test process) is not mistaken for it either
    other.pid_file.write_text(str(os.getpid()))
    assert "stale" in other.status().message
    other.stop()  # must not signal this process
    assert not other.pid_file.exists()


def test_no_server_gives_a_clear_connection_error() -> None:
    port = free_port()
    with pytest.raises(ConnectionFailed, match=f"no Neo4j answers at bolt://127.0.0.1:{port}"):
        ProductGraph.connect(f"bolt://127.0.0.1:{port}", "neo4j", "whatever")


def test_wrong_password_gives_a_clear_error(neo4j_settings: Neo4jSettings) -> None:
    with pytest.raises(ConnectionFailed, match="refused the credentials"):
        ProductGraph.connect(neo4j_settings.uri, neo4j_settings.user, "wrong-password")
