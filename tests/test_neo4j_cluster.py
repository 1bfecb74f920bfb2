"""Neo4j clusters and Aura (issue 15, item 4), against real Neo4j servers.

* ``neo4j://`` (the routing scheme a cluster or Aura needs) against the session's server: ingest,
  snapshot export and a completion run with write-back work end to end, and give what ``bolt://`` gives.
* Every session shares the client's bookmark manager (causal consistency across sessions).
* A restart of the server in mid-run: this module starts its OWN Neo4j (never restarting the session's),
  stops it while an ingest and a streamed read are running, and again in the middle of a write-back,
  and starts it again; the managed transactions retry and the result has no lost and no duplicate fact.
* TLS: the same server speaks TLS on Bolt with a certificate signed by a CA made at test time
  (openssl); ``neo4j+s://`` with ``NEO4J_TRUSTED_CA`` and ``neo4j+ssc://`` connect, ``neo4j+s://``
  without the CA is refused.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest
from neo4j import GraphDatabase

from attrgraph.complete import complete
from graph import LocalNeo4j, LocalNeo4jSettings, Neo4jSettings, ProductGraph
from graph import writeback as wb
from graph.connection import Neo4jClient, driver_target
from graph.errors import ConnectionFailed
from graph.export import export_snapshot
from graph.settings import SettingsError
from tests.conftest import free_port, write_jsonl

pytestmark = pytest.mark.neo4j

FAST = {"model": "majority", "review_min_p": 0.3, "batch_size": 200, "rules": ["myntra"]}
N_RECORDS = 600
RETRY_S = 150.0  # generous: a restart takes 20-40 s on a busy 2-core machine

FACTS = """
MATCH (p:Product)-[h:HAS_VALUE|HAS_BRAND|IN_CATEGORY]->(x)
RETURN p.id AS p, type(h) AS t, coalesce(x.attribute, '') + '|' + coalesce(x.norm, x.key, x.path) AS k
"""


def routed(settings: Neo4jSettings, **kw) -> Neo4jSettings:
    """The same server through the routing scheme (``neo4j://``)."""
    scheme, rest = settings.uri.split("://", 1)
    return Neo4jSettings(uri="neo4j" + scheme[len("bolt"):] + "://" + rest if scheme.startswith("bolt") else settings.uri,
                         user=settings.user, password=settings.password, database=settings.database, **kw)


def fact_multiset(client: Neo4jClient) -> Counter:
    return Counter((r["p"], r["t"], r["k"]) for r in client.read(FACTS))


@pytest.fixture(scope="module")
def records(sample_records: list[dict]) -> list[dict]:
    return sample_records[:N_RECORDS]


# -- the routing scheme against the session's server ------------------------------------------------------
def test_routing_scheme_end_to_end(empty_graph: ProductGraph, neo4j_settings: Neo4jSettings, records: list[dict],
                                   tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "part.jsonl", records)
    with ProductGraph(Neo4jClient(routed(neo4j_settings))) as g:
        assert g.client.settings.uri.startswith("neo4j")
        g.client.verify()
        rep = g.ingest(f, mapping="myntra", batch_size=100)
        assert rep.status == "completed" and rep.products_created == N_RECORDS and rep.rows_rejected == 0
        facts = fact_multiset(g.client)
        assert facts == fact_multiset(empty_graph.client)  # what the routed client wrote, bolt:// reads
        assert max(facts.values()) == 1
        s_routed = export_snapshot(g.client, tmp_path / "snap-routed")
        s_bolt = export_snapshot(empty_graph.client, tmp_path / "snap-bolt")
        assert s_routed.fingerprint == s_bolt.fingerprint and s_routed.nodes["product"] == N_RECORDS
        r = complete(g, **FAST, work_dir=str(tmp_path / "w"), full=True)
        assert r.status == "committed" and r.counts["written"] > 100
        # the write-back, read back through bolt://: exactly the run's predictions, each once
        want = {(p.product, p.attribute, p.norm, r.run_id) for p in r.predictions}
        assert wb.current_set(empty_graph.client) == want
        integ = wb.integrity(empty_graph.client)
        assert integ.ok and integ.current_edges == r.counts["written"] == len(want)
        # the named-query reader and the schema go through managed transactions too
        assert g.stats().products == N_RECORDS
        assert "product_id" in g.ensure_schema()["constraints"]


def test_every_session_shares_the_bookmark_manager(empty_graph: ProductGraph, neo4j_settings: Neo4jSettings,
                                                   tmp_path: Path) -> None:
    seen: list[frozenset[str]] = []
    asked = 0

    def supplier() -> neo4j.Bookmarks:
        nonlocal asked
        asked += 1
        return neo4j.Bookmarks()

    with Neo4jClient(routed(neo4j_settings)) as c:
        # a recording manager in place of the driver's: every session of the client must use it
        c.bookmarks = GraphDatabase.bookmark_manager(bookmarks_supplier=supplier,
                                                     bookmarks_consumer=lambda b: seen.append(frozenset(b.raw_values)))
        c.write("MERGE (x:BookmarkProbe {id: 1}) SET x.v = $v", {"v": "first"})
        assert seen and seen[-1], "the write's bookmark never reached the shared manager"
        after_write = seen[-1]
        # another session (another transaction function, another access mode) sees the write
        assert c.read("MATCH (x:BookmarkProbe {id: 1}) RETURN x.v AS v") == [{"v": "first"}]
        got: list[str] = []
        assert c.read_each("MATCH (x:BookmarkProbe) RETURN x.v AS v", {}, lambda r: got.append(r["v"])) == 1
        assert got == ["first"]
        c.write_tx(lambda tx: tx.run("MATCH (x:BookmarkProbe {id: 1}) SET x.v = 'second'").consume())
        assert seen[-1] != after_write
        assert c.read_tx(lambda tx: tx.run("MATCH (x:BookmarkProbe {id: 1}) RETURN x.v AS v").single()["v"]) == "second"
        c.schema(["CREATE INDEX bookmark_probe IF NOT EXISTS FOR (x:BookmarkProbe) ON (x.v)"])
        c.run_in_transactions("MATCH (x:BookmarkProbe) CALL (x) { DELETE x } IN TRANSACTIONS OF 10 ROWS")
        assert c.read("MATCH (x:BookmarkProbe) RETURN count(x) AS n") == [{"n": 0}]
        c.schema(["DROP INDEX bookmark_probe IF EXISTS"], await_seconds=None)
        assert asked >= 10  # every transaction above asked the shared manager for its bookmarks


def test_only_call_in_transactions_may_run_outside_a_managed_transaction(empty_graph: ProductGraph) -> None:
    with pytest.raises(ValueError, match="IN TRANSACTIONS"):
        empty_graph.client.run_in_transactions("MATCH (n) DETACH DELETE n")
    # the old entry point routes a plain statement to a managed write
    empty_graph.client.run_autocommit("MERGE (:AutoProbe {id: 1})")
    assert empty_graph.client.read("MATCH (x:AutoProbe) RETURN count(x) AS n") == [{"n": 1}]


def test_settings_for_clusters_and_aura(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made")
    monkeypatch.setenv("NEO4J_URI", "neo4j+s://db.example.invalid:7687")
    monkeypatch.setenv("NEO4J_PASSWORD", "pw")
    monkeypatch.setenv("NEO4J_TRUSTED_CA", str(ca))
    monkeypatch.setenv("NEO4J_MAX_RETRY_SECONDS", "90")
    s = Neo4jSettings.resolve()
    assert s.trusted_ca == str(ca) and s.max_retry_seconds == 90.0 and "pw" not in repr(s)
    uri, tls = driver_target(s)
    assert uri == "neo4j://db.example.invalid:7687" and tls["encrypted"] is True
    assert isinstance(tls["trusted_certificates"], neo4j.TrustCustomCAs)
    c = Neo4jClient(s)  # the driver connects lazily
    try:
        assert c.max_retry_seconds == 90.0
    finally:
        c.close()
    monkeypatch.setenv("NEO4J_MAX_RETRY_SECONDS", "soon")
    with pytest.raises(SettingsError, match="NEO4J_MAX_RETRY_SECONDS"):
        Neo4jSettings.resolve()
    monkeypatch.setenv("NEO4J_MAX_RETRY_SECONDS", "5")
    monkeypatch.setenv("NEO4J_URI", "neo4j+ssc://db.example.invalid:7687")
    with pytest.raises(SettingsError, match=r"\+ssc"):
        Neo4jClient(Neo4jSettings.resolve())
    monkeypatch.setenv("NEO4J_URI", "neo4j+s://db.example.invalid:7687")
    monkeypatch.setenv("NEO4J_TRUSTED_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(SettingsError, match="missing.pem"):
        Neo4jClient(Neo4jSettings.resolve())
    with pytest.raises(SettingsError, match="scheme"):
        Neo4jSettings(uri="https://db.example.invalid", user="u", password="p")
    with pytest.raises(SettingsError, match="line break"):
        LocalNeo4jSettings(home=tmp_path, dist_dir=tmp_path, extra_config={"server.bolt.tls_level": "OPTIONAL\nx=y"})


# -- a server of this module's own: restarts and TLS --------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {p.stderr[-2000:]}")


def make_certificates(d: Path) -> Path:
    """A private CA and a server certificate it signed for localhost / 127.0.0.1, in Neo4j's SSL-policy
    layout (``private.key``, ``public.crt``, ``trusted/``, ``revoked/``). Returns the CA file."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests need the openssl command line tool", pytrace=False)
    d.mkdir(parents=True, exist_ok=True)
    (d / "trusted").mkdir()
    (d / "revoked").mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=attrgraph test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "private.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "public.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d / "ca.crt"


class OwnServer:
    def __init__(self, server: LocalNeo4j, ca: Path):
        self.server, self.ca = server, ca
        s = server.settings
        self.bolt = Neo4jSettings(uri=s.uri, user="neo4j", password=s.password(), max_retry_seconds=RETRY_S)
        self.routed = routed(self.bolt, max_retry_seconds=RETRY_S)


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnServer]:
    root = tmp_path_factory.mktemp("own-neo4j")
    ca = make_certificates(root / "certs")
    tls = {
        "dbms.ssl.policy.bolt.enabled": "true",
        "dbms.ssl.policy.bolt.base_directory": str(root / "certs"),
        "dbms.ssl.policy.bolt.private_key": "private.key",
        "dbms.ssl.policy.bolt.public_certificate": "public.crt",
        "dbms.ssl.policy.bolt.client_auth": "NONE",
        "server.bolt.tls_level": "OPTIONAL",  # TLS and plain Bolt on one port: the restart tests use plain
    }
    local = LocalNeo4jSettings(home=root / "home", dist_dir=LocalNeo4jSettings.from_env().dist_dir, port=free_port(),
                               heap_mb=512, pagecache_mb=64, extra_config=tls)
    server = LocalNeo4j(local)
    server.start()  # a failure here fails the module: never skipped
    try:
        yield OwnServer(server, ca)
    finally:
        server.stop(timeout_s=3)  # its data is thrown away: no need to wait for a clean shutdown


def test_tls_with_a_private_ca_and_with_ssc(own_server: OwnServer, monkeypatch: pytest.MonkeyPatch) -> None:
    port = own_server.server.settings.port
    pw = own_server.bolt.password
    monkeypatch.setenv("NEO4J_PASSWORD", pw)
    monkeypatch.setenv("NEO4J_TRUSTED_CA", str(own_server.ca))
    for host in ("127.0.0.1", "localhost"):
        monkeypatch.setenv("NEO4J_URI", f"neo4j+s://{host}:{port}")
        with ProductGraph.connect() as g:  # settings from the environment, as a user sets them for Aura
            assert g.client.settings.trusted_ca == str(own_server.ca)
            g.client.write("MERGE (x:TlsProbe {id: $h})", {"h": host})
            assert g.client.read("MATCH (x:TlsProbe {id: $h}) RETURN x.id AS id", {"h": host}) == [{"id": host}]
    monkeypatch.delenv("NEO4J_TRUSTED_CA")
    monkeypatch.setenv("NEO4J_URI", f"neo4j+ssc://127.0.0.1:{port}")
    with ProductGraph.connect() as g:
        assert g.client.read("MATCH (x:TlsProbe) RETURN count(x) AS n") == [{"n": 2}]
        g.client.write("MATCH (x:TlsProbe) DELETE x")
    # without the CA, the system's trust store does not know the certificate: refused
    monkeypatch.setenv("NEO4J_URI", f"neo4j+s://127.0.0.1:{port}")
    with pytest.raises(ConnectionFailed, match="certificate"):
        ProductGraph.connect()


def test_restart_in_mid_run(own_server: OwnServer, empty_graph: ProductGraph, records: list[dict], tmp_path: Path,
                            caplog: pytest.LogCaptureFixture) -> None:
    """One restart of the server while three pieces of work are half done, each held at a point where
    it has committed part of its transactions: an ingest (batch 5 of 12), a completion run's write-back
    (staged batch 3) and a streamed read (record 3,000 of 20,000). Each goes on as soon as the server is
    stopped, so its next transaction meets a dead, then starting, server, and is retried."""
    first = write_jsonl(tmp_path / "first.jsonl", records[: N_RECORDS // 2])
    second = write_jsonl(tmp_path / "second.jsonl", records[N_RECORDS // 2 :])
    # the reference: the same files ingested without trouble into the session's server
    for f in (first, second):
        assert empty_graph.ingest(f, mapping="myntra", batch_size=25).rows_rejected == 0
    reference = fact_multiset(empty_graph.client)
    assert max(reference.values()) == 1

    caplog.set_level("WARNING", logger="graph.connection")
    with ProductGraph(Neo4jClient(own_server.routed)) as g:
        g.clear(confirm=True)
        g.ingest(first, mapping="myntra", batch_size=100)
        stopped = threading.Event()
        held = {k: threading.Event() for k in ("ingest", "write-back", "read")}
        out: dict[str, object] = {}

        def hold(what: str) -> None:
            held[what].set()
            assert stopped.wait(300)

        def progress(_b: int, _t: int, rows: int) -> None:
            if rows >= 100 and not held["ingest"].is_set():
                hold("ingest")

        def say(msg: str) -> None:
            if msg.startswith("written ") and int(msg.split()[1].split("/")[0]) >= 400 and not held["write-back"].is_set():
                hold("write-back")

        got: list[int] = []
        restarts = 0

        def take(rec: neo4j.Record) -> None:
            got.append(rec["i"])
            if len(got) == 3000 and not held["read"].is_set():  # mid-stream (fetch size 1000)
                hold("read")

        def restart() -> None:
            nonlocal restarts
            restarts += 1
            got.clear()

        def background(name: str, fn) -> threading.Thread:
            def run() -> None:
                try:
                    out[name] = fn()
                except BaseException as e:  # noqa: BLE001 - handed to the test thread
                    out[name + " error"] = e
                    held[name].set()
            t = threading.Thread(target=run, name=name)
            t.start()
            return t

        threads = [
            background("read", lambda: g.client.read_each("UNWIND range(1, $n) AS i RETURN i", {"n": 20_000}, take,
                                                          restart=restart, fetch_size=1000)),
            background("ingest", lambda: g.ingest(second, mapping="myntra", batch_size=25, progress=progress)),
        ]
        # the completion run starts once the ingest is held: its snapshot must not race the ingest's writes
        assert held["ingest"].wait(120)
        threads.append(background("write-back", lambda: complete(g, **FAST, work_dir=str(tmp_path / "w"), full=True,
                                                                 progress=say)))
        for k, e in held.items():
            assert e.wait(300), f"{k} never reached its hold point"
        assert not [k for k in out if k.endswith("error")], out
        own_server.server.stop()
        stopped.set()
        own_server.server.start()
        for t in threads:
            t.join(timeout=RETRY_S + 60)
        assert not [k for k in out if k.endswith("error")], out
        retried = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
        assert retried, "no transaction met the stopped server"

        rep = out["ingest"]
        assert rep.status == "completed" and rep.rows_read == N_RECORDS // 2 and rep.rows_rejected == 0
        # every row went in once: created, or found unchanged by a retry of a batch that had committed
        assert rep.products_created + rep.products_unchanged == N_RECORDS // 2
        facts = fact_multiset(g.client)
        assert facts == reference and max(facts.values()) == 1  # none lost, none twice
        assert g.stats().products == N_RECORDS

        r = out["write-back"]
        assert r.status == "committed" and r.counts["written"] > 400
        want = {(p.product, p.attribute, p.norm, r.run_id) for p in r.predictions}
        assert wb.current_set(g.client) == want  # every prediction of the run is current, once
        integ = wb.integrity(g.client)
        assert integ.ok and integ.duplicate_run_edges == 0 and integ.pending_edges == 0
        assert integ.current_edges == r.counts["written"] == len(want)

        # the stream was delivered whole, once, after the retry started it again
        assert restarts >= 1 and out["read"] == 20_000 and got == list(range(1, 20_001))


# -- the README's figures come from the benchmark's record -------------------------------------------------
def test_readme_block_is_rendered_from_the_recorded_results() -> None:
    from bench import bench_neo4j_tx as bt

    recs = bt.records()
    assert recs, "bench/results/neo4j_tx.jsonl has no record"
    r = recs[-1]
    assert r["restart"]["ingest"]["ok"] and r["restart"]["writeback"]["ok"]
    block = bt.readme_block(bt.README.read_text(encoding="utf-8"))
    assert block is not None, "README.md lacks the neo4j-tx markers"
    assert block == bt.render(), ("README.md's neo4j-tx block differs from bench/results/neo4j_tx.jsonl: run "
                                  "`.venv/bin/python bench/bench_neo4j_tx.py --write-readme` (never edit inside it)")
    assert f"{r['ingest']['ratio_per_s']:.2f}" in block and r["commit"] in block
