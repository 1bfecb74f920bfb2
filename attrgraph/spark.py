"""Batch work on Apache Spark: the completion run's bulk stages on a Spark cluster (or ``local[N]``).

``attrgraph complete --engine spark --master local[2]`` (or ``spark://host:7077``, ``yarn``, ...) runs
the same completion as the local engine (:mod:`attrgraph.complete`) with three stages moved to Spark:

* **snapshot** (:func:`export_snapshot_spark`): every node type and relation of ``graph.export`` is
  read through the Neo4j Connector for Apache Spark in ``partitions`` parallel reads (the same Cypher
  as the local export, ordered, split by the connector with SKIP/LIMIT); the driver writes the same
  files, so the snapshot's content fingerprint equals the local one.
* **features** (:func:`text_features_spark`) and **predict** (:func:`predict_spark`): ``mapInPandas``
  over the texts to encode (one task per chunk of the embedding cache, so every text is encoded in the
  same batch as locally) and over the products to score (the saved model and the snapshot are loaded
  once per Python worker and kept there; every worker scores with the whole graph, so neighbourhoods
  are exact and predictions equal the single process's).
* **write** (:func:`stage_predictions_spark`): the run's ``PREDICTED_VALUE`` edges are staged through
  the connector in query mode, in **one write partition** of ``batch_size`` rows per transaction, with
  the local write-back's Cypher (:data:`graph.writeback._STAGE`) and the run's lock fence first in each
  transaction. One partition, because a run's edges share ``Value``/``Brand`` nodes (two tasks would
  lock the same nodes) and because the fence serialises batches anyway. The driver then commits with
  :func:`graph.writeback.commit_predictions`, exactly as the local engine: the run stays invisible
  until its last transaction.

Planning, training, validation by the rules, explanations and the commit stay on the driver.

The connector (``org.neo4j:neo4j-connector-apache-spark_2.12:5.0.3_for_spark_3``, one self-contained
jar) is fetched by Maven (``maven-dependency-plugin:copy``) into ``$ATTRGRAPH_HOME/dist`` the first
time an engine starts, as the local Neo4j's jars are, never at import; ``ATTRGRAPH_SPARK_CONNECTOR_JAR``
points at a jar obtained otherwise. On a cluster, every executor needs this package installed and the
completion work directory on a file system mounted at the same path (the workers read the snapshot and
the saved model from it).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from graph import writeback as wb
from graph.connection import Neo4jClient
from graph.export import EDGE_QUERIES, NODE_QUERIES, SNAPSHOT_FORMAT, SYSTEM_PRODUCT_PROPERTIES, ExportSummary, _fingerprint, replace_dir
from graph.runs import LOCK_NAME, LockLost, lock_state, now
from graph.settings import LocalNeo4jSettings, Neo4jSettings

from .complete import CompleteError

CONNECTOR_GROUP = "org.neo4j"
CONNECTOR_ARTIFACT = "neo4j-connector-apache-spark_2.12"
CONNECTOR_VERSION = "5.0.3_for_spark_3"
CONNECTOR = f"{CONNECTOR_GROUP}:{CONNECTOR_ARTIFACT}:{CONNECTOR_VERSION}"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
SPARK_SERIES = "3.5."
JAR_ENV = "ATTRGRAPH_SPARK_CONNECTOR_JAR"
FORMAT = "org.neo4j.spark.DataSource"


class SparkEngineError(CompleteError):
    """The Spark engine cannot start (pyspark, Java, Maven or the connector jar missing) or a Spark stage failed."""


# -- the connector jar and the session ---------------------------------------------------------------
def connector_dir() -> Path:
    return LocalNeo4jSettings.from_env().dist_dir / f"spark-connector-{CONNECTOR_VERSION}"


def ensure_connector_jar() -> Path:
    """The connector jar: ``$ATTRGRAPH_SPARK_CONNECTOR_JAR``, or fetched once by Maven into
    ``$ATTRGRAPH_HOME/dist/spark-connector-<version>/`` (atomically: a half-fetched jar is never used)."""
    env = os.environ.get(JAR_ENV)
    if env:
        p = Path(env)
        if not p.is_file():
            raise SparkEngineError(f"{JAR_ENV}={env}: no such file (the Neo4j Connector for Apache Spark jar, {CONNECTOR})")
        return p
    d = connector_dir()
    jar = d / f"{CONNECTOR_ARTIFACT}-{CONNECTOR_VERSION}.jar"
    if jar.is_file():
        return jar
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise SparkEngineError(f"'{tool}' is not on PATH: the Spark engine needs Java 17 and Maven to fetch the "
                                   f"Neo4j connector ({CONNECTOR}); install them, or set {JAR_ENV} to the jar")
    tmp = d.with_name(d.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = ["mvn", "-q", "-B", f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={CONNECTOR}", f"-DoutputDirectory={tmp}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    got = tmp / jar.name
    if proc.returncode != 0 or not got.is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise SparkEngineError(f"fetching the Neo4j connector for Spark failed ({' '.join(cmd)}):\n{tail}")
    if d.exists():  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(d)
    return jar


def _pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise SparkEngineError("the Spark engine needs pyspark: pip install 'attrgraph[spark]'") from None
    if not pyspark.__version__.startswith(SPARK_SERIES):
        raise SparkEngineError(f"pyspark {pyspark.__version__} is installed; the Neo4j connector {CONNECTOR} needs "
                               f"Spark {SPARK_SERIES}x: pip install 'attrgraph[spark]'")
    for mod in ("pandas", "pyarrow"):
        try:
            __import__(mod)
        except ImportError:
            raise SparkEngineError(f"the Spark engine needs {mod} (mapInPandas): pip install 'attrgraph[spark]'") from None
    return pyspark


@dataclass(frozen=True)
class SparkOptions:
    master: str = "local[2]"
    partitions: int = 2  # read partitions, and product / text partitions of mapInPandas
    driver_memory: str = "512m"
    executor_memory: str | None = None
    app_name: str = "attrgraph"


def spark_session(opts: SparkOptions | None = None) -> Any:
    """A SparkSession with the connector on its class path (the running one when there is one: a
    driver JVM starts once per process). Python workers run one thread each (OMP/MKL/torch)."""
    opts = opts or SparkOptions()
    _pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise SparkEngineError("Java is not installed (no 'java' on PATH, no JAVA_HOME): Spark needs Java 17")
    jar = ensure_connector_jar()
    # the Python workers run this interpreter (pyspark reads PYSPARK_PYTHON, not only its conf, in local mode)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = (SparkSession.builder.master(opts.master).appName(opts.app_name)
         .config("spark.jars", str(jar))
         .config("spark.driver.memory", opts.driver_memory)
         .config("spark.sql.shuffle.partitions", str(max(1, opts.partitions)))
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.python.worker.reuse", "true")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.pyspark.python", sys.executable)
         .config("spark.pyspark.driver.python", sys.executable))
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        b = b.config(f"spark.executorEnv.{k}", "1")
    if opts.master.startswith("local"):  # one machine: the driver listens on loopback only
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        b = b.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    if os.environ.get("ATTRGRAPH_HOME"):
        b = b.config("spark.executorEnv.ATTRGRAPH_HOME", os.environ["ATTRGRAPH_HOME"])
    if opts.executor_memory:
        b = b.config("spark.executor.memory", opts.executor_memory)
    try:
        spark = b.getOrCreate()
    except Exception as e:  # noqa: BLE001 - py4j / JVM start errors have no common base
        raise SparkEngineError(f"Spark did not start (master {opts.master}): {type(e).__name__}: {e}") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _reader(spark: Any, s: Neo4jSettings) -> Any:
    r = spark.read.format(FORMAT).option("url", s.uri)
    return _auth(r, s)


def _auth(r: Any, s: Neo4jSettings) -> Any:
    if s.password:  # an option of this reader only: never a session setting, never logged (Spark redacts it)
        r = r.option("authentication.basic.username", s.user).option("authentication.basic.password", s.password)
    else:
        r = r.option("authentication.type", "none")
    if s.database:
        r = r.option("database", s.database)
    return r


def read_query(spark: Any, settings: Neo4jSettings, query: str, schema: str, *, partitions: int = 1,
               count_query: str | None = None) -> Any:
    """A DataFrame of ``query`` (its rows in ``partitions`` SKIP/LIMIT slices; ``count_query`` returns
    ``count``). The schema is given: a column that is null in the first rows is not guessed wrong."""
    r = _reader(spark, settings).option("query", query).schema(schema)
    if partitions > 1 and count_query:
        r = r.option("partitions", str(partitions)).option("query.count", count_query)
    return r.load()


# -- snapshot export ------------------------------------------------------------------------------------
_SYSTEM = "[" + ", ".join(json.dumps(k) for k in SYSTEM_PRODUCT_PROPERTIES) + "]"  # fixed names, not user data
_PROP_FILTER = ("p[k] IS NOT NULL AND (valueType(p[k]) =~ '(STRING|INTEGER|FLOAT|BOOLEAN) NOT NULL' "
                "OR valueType(p[k]) STARTS WITH 'LIST<STRING')")

# The local export's queries (graph.export.NODE_QUERIES), with product properties of any type carried as
# string lists ([name, type, text] or [name, 'LIST', items...]) and typed back in Python exactly
SPARK_NODE_QUERIES: dict[str, tuple[str, str, str]] = {
    "product": ("MATCH (p:Product) RETURN p.id AS key, p.title AS title, p.description AS description, "
                "p.content_hash AS hash, p.source AS source, "
                f"[k IN keys(p) WHERE NOT k IN {_SYSTEM} AND {_PROP_FILTER} | "
                "CASE WHEN valueType(p[k]) STARTS WITH 'LIST' THEN [k, 'LIST'] + p[k] "
                "ELSE [k, valueType(p[k]), toString(p[k])] END] AS props ORDER BY key",
                "key string, title string, description string, hash string, source string, "
                "props array<array<string>>",
                "MATCH (p:Product) RETURN count(p) AS count"),
    "brand": (NODE_QUERIES["brand"], "key string, name string", "MATCH (b:Brand) RETURN count(b) AS count"),
    "category": (NODE_QUERIES["category"], "key string, name string, level long",
                 "MATCH (c:Category) RETURN count(c) AS count"),
    "attribute": (NODE_QUERIES["attribute"], "key string", "MATCH (a:Attribute) RETURN count(a) AS count"),
    "value": (NODE_QUERIES["value"], "key array<string>, attribute string, norm string, value string, "
              "quantity double, unit string", "MATCH (v:Value) RETURN count(v) AS count"),
}

_KEY_TYPE = {"product": "string", "brand": "string", "category": "string", "attribute": "string", "value": "array<string>"}


def _edge_query(rel: str) -> tuple[str, str, str]:
    src, dst, q = EDGE_QUERIES[rel]
    match = q.split(" RETURN ")[0]
    return (q + " ORDER BY s, t", f"s {_KEY_TYPE[src]}, t {_KEY_TYPE[dst]}", match + " RETURN count(*) AS count")


def _typed(kind: str, text: str) -> Any:
    if kind.startswith("INTEGER"):
        return int(text)
    if kind.startswith("FLOAT"):
        return float(text)
    if kind.startswith("BOOLEAN"):
        return text == "true"
    return text


def _product_props(props: list[list[str]] | None) -> dict[str, Any]:
    out = {}
    for item in props or ():
        if item[1] == "LIST":
            out[item[0]] = list(item[2:])
        else:
            out[item[0]] = _typed(item[1], item[2])
    return dict(sorted(out.items()))  # as graph.export: sorted names, the same bytes for the same graph


def _key(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def export_snapshot_spark(spark: Any, settings: Neo4jSettings, out_dir: str | Path, *, partitions: int = 2
                          ) -> ExportSummary:
    """The snapshot of ``graph.export.export_snapshot``, read through Spark in ``partitions`` parallel
    partitions per node type and relation; the same files and the same content fingerprint."""
    from graph.errors import GraphError

    out = Path(out_dir)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "nodes").mkdir(parents=True)
    (tmp / "edges").mkdir()
    t0 = time.perf_counter()
    index: dict[str, dict[Any, int]] = {}
    counts: dict[str, int] = {}
    for ntype, (q, schema, cq) in SPARK_NODE_QUERIES.items():
        df = read_query(spark, settings, q, schema, partitions=partitions, count_query=cq)
        ids: dict[Any, int] = {}
        with open(tmp / "nodes" / f"{ntype}.jsonl", "w", encoding="utf-8") as fh:
            # partitions come back in order, each ordered by key: the rows in the local export's order
            for row in df.toLocalIterator():
                d = row.asDict(recursive=True)
                if ntype == "product":
                    d["props"] = _product_props(d["props"])
                k = _key(d["key"])
                if k in ids:
                    raise GraphError(f"spark export: duplicate {ntype} key {k!r}")
                ids[k] = len(ids)
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
        index[ntype] = ids
        counts[ntype] = len(ids)
    edge_counts: dict[str, int] = {}
    for rel, (src, dst, _) in EDGE_QUERIES.items():
        q, schema, cq = _edge_query(rel)
        si, di = index[src], index[dst]
        a, b = array("q"), array("q")
        for row in read_query(spark, settings, q, schema, partitions=partitions, count_query=cq).toLocalIterator():
            a.append(si[_key(row["s"])])
            b.append(di[_key(row["t"])])
        e = np.stack([np.frombuffer(a, dtype=np.int64), np.frombuffer(b, dtype=np.int64)]) if a else np.zeros((2, 0), np.int64)
        order = np.lexsort((e[1], e[0]))
        np.save(tmp / "edges" / f"{rel}.npy", e[:, order])
        edge_counts[rel] = int(e.shape[1])
    fp = _fingerprint(tmp)
    manifest = {
        "format": SNAPSHOT_FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"uri": settings.uri, "database": settings.database or "(default)"},
        "nodes": counts,
        "edges": {rel: {"source": EDGE_QUERIES[rel][0], "target": EDGE_QUERIES[rel][1], "count": n}
                  for rel, n in edge_counts.items()},
        "fingerprint": fp,
        "engine": {"name": "spark", "partitions": partitions},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    replace_dir(tmp, out)
    return ExportSummary(out, counts, edge_counts, fp, time.perf_counter() - t0)


def node_counts_spark(spark: Any, settings: Neo4jSettings, *, partitions: int = 2) -> dict[str, int]:
    """Rows per node type read through Spark (partitioned), for checks against Cypher counts."""
    return {t: read_query(spark, settings, q, schema, partitions=partitions, count_query=cq).count()
            for t, (q, schema, cq) in SPARK_NODE_QUERIES.items()}


# -- work in the Python workers ---------------------------------------------------------------------------
# Loaded once per Python worker (Spark reuses its workers), keyed by what they were loaded from.
_WORKER: dict[Any, Any] = {}


def _worker_threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _worker_encoder(spec: dict[str, Any]) -> Any:
    key = ("encoder", json.dumps(spec, sort_keys=True, default=str))
    if key not in _WORKER:
        _worker_threads()
        from gnn.text import get_encoder

        enc = get_encoder(spec["name"], **spec["kwargs"])
        if spec.get("fitted"):
            enc = type(enc).load(spec["fitted"])
        _WORKER[key] = enc
    return _WORKER[key]


def _encode_partition(spec: dict[str, Any], batches: Iterator[Any]) -> Iterator[Any]:
    import pandas as pd

    frames = list(batches)
    if not frames:
        return
    df = pd.concat(frames, ignore_index=True)
    enc = _worker_encoder(spec)
    for chunk, g in df.groupby("chunk", sort=True):
        g = g.sort_values("pos", kind="stable")
        vecs = enc.encode(list(g["text"]))
        yield pd.DataFrame({"chunk": g["chunk"].to_numpy(), "pos": g["pos"].to_numpy(),
                            "vec": [np.ascontiguousarray(v, dtype=np.float32).tobytes() for v in vecs]})


def _worker_predictor(model_dir: str, snap_dir: str, fingerprint: str, stamp: str) -> tuple[Any, Any]:
    key = ("predictor", model_dir, snap_dir, fingerprint, stamp)
    if key not in _WORKER:
        for k in [k for k in _WORKER if k[0] == "predictor"]:  # one model at a time per worker
            del _WORKER[k]
        _worker_threads()
        from gnn.completion import CompletionPredictor
        from gnn.snapshot import load_snapshot

        snap = load_snapshot(snap_dir)
        if snap.fingerprint != fingerprint:
            raise SparkEngineError(f"worker: the snapshot in {snap_dir} is {snap.fingerprint[:12]}, the driver's is "
                                   f"{fingerprint[:12]}: the work directory must be the same files on every host")
        pred = CompletionPredictor.load(model_dir)
        pred = pred.rebind(snap)
        _WORKER[key] = (pred, snap)
    return _WORKER[key]


def _predict_partition(args: dict[str, Any], batches: Iterator[Any]) -> Iterator[Any]:
    import pandas as pd

    frames = list(batches)
    if not frames:
        return
    ids = np.concatenate([f["product"].to_numpy(np.int64) for f in frames])
    pred, snap = _worker_predictor(args["model_dir"], args["snap_dir"], args["fingerprint"], args["stamp"])
    if list(pred.split.attribute_names) != args["names"]:
        raise SparkEngineError("worker: the predictor's attributes differ from the driver's (another model in the work directory?)")
    c = pred.predict(snap, products=ids, top_k=args["top_k"], attributes=args["attributes"])
    yield pd.DataFrame({"product": c.product, "attribute": c.attribute,
                        "candidate": list(c.candidate), "prob": list(c.prob.astype(np.float32)),
                        "threshold": c.threshold.astype(np.float64)})


# -- text features ------------------------------------------------------------------------------------------
@dataclass
class SparkFeatureReport:
    encoder: str
    version: str
    dim: int
    texts: int
    encoded: int
    cached: int
    seconds: float
    tasks: int


def text_features_spark(spark: Any, snap: Any, cfg: Any, *, chunk: int = 4096) -> SparkFeatureReport:
    """``attrgraph.features.compute_text_features`` with the cache misses encoded by ``mapInPandas``:
    one task per ``chunk`` of missing texts, each encoded as one call of the encoder, as the local
    cache does (``gnn.text.EmbeddingCache``, same chunk): every text is encoded in the same batch as
    locally, so the features are the same numbers. The encoder loads once per Python worker."""
    import pandas as pd

    from gnn.text import EmbeddingCache, get_encoder
    from graph.settings import attrgraph_home

    t0 = time.perf_counter()
    enc = get_encoder(cfg.encoder, **cfg.encoder_kwargs)
    texts = {t: snap.texts(t, max_chars=cfg.max_chars) for t in cfg.node_types}
    fitted = None
    if hasattr(enc, "fit") and not getattr(enc, "fitted", True):  # as compute_text_features: fitted once, on the driver
        fitted = (Path(cfg.fitted_dir) if cfg.fitted_dir else snap.features.root) / f"{cfg.encoder}.npz"
        if fitted.exists():
            enc = type(enc).load(fitted)
        else:
            enc.fit([x for t in cfg.node_types for x in texts[t]])
            fitted.parent.mkdir(parents=True, exist_ok=True)
            enc.save(fitted)
    if hasattr(enc, "load") and not fitted:  # a distilled table (static): made once, here, not by every worker
        enc.load()
    spec = {"name": cfg.encoder, "kwargs": cfg.encoder_kwargs, "fitted": str(fitted) if fitted else None}
    cache = EmbeddingCache(cfg.cache_path or attrgraph_home() / "cache" / "text-embeddings.sqlite", chunk=chunk)
    tasks = 0
    try:
        ver = enc.version
        # every distinct text of every node type, in the order the local path meets them
        # (the local path encodes each node type's new texts in chunks of its own: so do the chunks here)
        todo: dict[bytes, int] = {}
        todo_texts: list[str] = []
        chunk_of: list[int] = []
        keys_by_type = {t: [cache.key(x) for x in texts[t]] for t in cfg.node_types}
        found: dict[bytes, bytes] = {}
        for t in cfg.node_types:
            keys = keys_by_type[t]
            new = [k for k in set(keys) if k not in found and k not in todo]
            found.update(cache._lookup(enc.name, ver, new))
            first, start = len(todo_texts), (chunk_of[-1] + 1 if chunk_of else 0)
            for k, x in zip(keys, texts[t]):
                if k not in found and k not in todo:
                    todo[k] = len(todo_texts)
                    chunk_of.append(start + (len(todo_texts) - first) // chunk)
                    todo_texts.append(x)
        if todo_texts:
            pdf = pd.DataFrame({"chunk": np.asarray(chunk_of, np.int64), "pos": np.arange(len(todo_texts)),
                                "text": todo_texts})
            tasks = int(pdf["chunk"].nunique())
            df = spark.createDataFrame(pdf).repartitionByRange(tasks, "chunk")
            res = df.mapInPandas(functools.partial(_encode_partition, spec), "chunk long, pos long, vec binary").toPandas()
            if len(res) != len(todo_texts):
                raise SparkEngineError(f"spark features: {len(res)} vectors came back for {len(todo_texts)} texts")
            new = np.zeros((len(todo_texts), enc.dim), np.float32)
            new[res["pos"].to_numpy()] = np.stack([np.frombuffer(v, np.float32) for v in res["vec"]])
            todo_keys = list(todo)
            with cache._db:
                cache._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?)",
                                      [(enc.name, ver, k, new[i].tobytes()) for i, k in enumerate(todo_keys)])
        else:
            new = np.zeros((0, enc.dim), np.float32)
        total = 0
        for t in cfg.node_types:
            keys = keys_by_type[t]
            m = np.zeros((len(keys), enc.dim), np.float32)
            for row, k in enumerate(keys):
                m[row] = np.frombuffer(found[k], dtype=np.float32) if k in found else new[todo[k]]
            snap.features.put(f"text.{t}", t, m, encoder=enc.name, version=ver)
            total += len(keys)
        return SparkFeatureReport(enc.name, ver, enc.dim, total, len(todo_texts), total - len(todo_texts),
                                  time.perf_counter() - t0, tasks)
    finally:
        cache.close()


# -- prediction ---------------------------------------------------------------------------------------------
def _model_stamp(model_dir: Path) -> str:
    f = model_dir / "meta.json"
    if f.exists():
        return json.loads(f.read_text(encoding="utf-8")).get("version", "") + f"@{f.stat().st_mtime_ns}"
    g = model_dir / "predictor.json"
    return f"{g.stat().st_mtime_ns}" if g.exists() else ""


def predict_spark(spark: Any, snap: Any, model_dir: str | Path, attribute_names: Sequence[str], *,
                  products: np.ndarray | None = None, top_k: int = 5, attributes: Sequence[str] | None = None,
                  partitions: int = 2) -> Any:
    """``CompletionPredictor.predict`` over ``products`` in ``partitions`` mapInPandas tasks: each Python
    worker loads the predictor saved in ``model_dir`` (rebound to ``snap`` when it was fitted on an earlier
    one) and the snapshot once, and scores its products with the whole graph. Returns the same
    :class:`gnn.completion.Candidates` as the single process (rows in its order); ``attribute_names`` are
    the driver's predictor's (``pred.split.attribute_names``)."""
    import pandas as pd

    from gnn.completion import Candidates

    model_dir = Path(model_dir)
    prods = np.arange(snap.num_nodes("product"), dtype=np.int64) if products is None else \
        np.unique(np.asarray(products, dtype=np.int64))
    names = list(attribute_names)
    if not len(prods):
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.full((0, top_k), -1, np.int64),
                          np.full((0, top_k), np.nan, np.float32), np.zeros(0), names)
    args = {"model_dir": str(model_dir.resolve()), "snap_dir": str(Path(snap.path).resolve()),
            "fingerprint": snap.fingerprint, "stamp": _model_stamp(model_dir), "top_k": int(top_k),
            "attributes": list(attributes) if attributes is not None else None, "names": names}
    n = max(1, min(int(partitions), len(prods)))
    bounds = np.linspace(0, len(prods), n + 1).astype(np.int64)
    part = np.zeros(len(prods), np.int64)
    for i in range(n):
        part[bounds[i]:bounds[i + 1]] = i
    df = spark.createDataFrame(pd.DataFrame({"part": part, "product": prods})).repartitionByRange(n, "part")
    res = df.mapInPandas(functools.partial(_predict_partition, args),
                         "product long, attribute long, candidate array<long>, prob array<float>, threshold double"
                         ).toPandas()
    res = res.sort_values(["product", "attribute"], kind="stable")  # the single process's order
    M = len(res)
    cand = np.stack(res["candidate"].to_numpy()).astype(np.int64) if M else np.full((0, top_k), -1, np.int64)
    prob = np.stack(res["prob"].to_numpy()).astype(np.float32) if M else np.full((0, top_k), np.nan, np.float32)
    return Candidates(res["product"].to_numpy(np.int64), res["attribute"].to_numpy(np.int64), cand, prob,
                      res["threshold"].to_numpy(np.float64), names)


# -- write-back ----------------------------------------------------------------------------------------------
def _spark_stage_query(target: str) -> str:
    """The local write-back's staging Cypher (``graph.writeback._STAGE``) for the connector's query mode:
    the connector runs ``UNWIND $events AS event`` before it, so the batch is collected, the run's lock
    is fenced first (a run that lost the lock writes nothing), and the run's constants come in every row."""
    q = wb._STAGE % target
    head = "UNWIND $rows AS r\n"
    if not q.lstrip().startswith(head.strip()):
        raise SparkEngineError("graph.writeback._STAGE changed shape: update attrgraph.spark._spark_stage_query")
    body = q.lstrip()[len(head):]
    for param, col in (("$model_version", "r.model_version"), ("$model", "r.model"), ("$run", "r.run"),
                       ("$now", "datetime(r.now)")):
        body = body.replace(param, col)
    # the connector passes flat rows (a struct column does not arrive as a map): the properties map again
    if body.count("r.props") != 1:
        raise SparkEngineError("graph.writeback._STAGE changed shape: update attrgraph.spark._spark_stage_query")
    body = body.replace("r.props", "{" + ", ".join(f"{k}: r.{k}" for k in _PROPS) + "}")
    if "$" in body:
        raise SparkEngineError(f"graph.writeback._STAGE has a parameter the Spark write does not set: {body}")
    fence = ("WITH collect(event) AS rows\n"
             "OPTIONAL MATCH (l:CompletionLock {name: rows[0].lock})\n"
             "SET (CASE WHEN l.holder = rows[0].run THEN l END).fenced_at = datetime()\n"
             "WITH rows, l WHERE l.holder = rows[0].run\n"
             "UNWIND rows AS r\n")
    return fence + body


_PROPS = ("p", "rank", "verdict", "threshold", "rules", "violations", "evidence_products", "text_evidence", "explanation")
_ROW_SCHEMA = ("product string, attribute string, norm string, run string, lock string, now string, model string, "
               "model_version string, p double, rank long, verdict string, threshold double, "
               "rules array<string>, violations array<string>, evidence_products array<string>, "
               "text_evidence string, explanation string")

_STAGED_COUNTS = """
MATCH (p:Product)-[e:PREDICTED_VALUE]->() WHERE e.run_id = $run
WITH count(e) AS written
OPTIONAL MATCH ()-[old:PREDICTED_VALUE]->() WHERE old.superseded_by = $run AND old.current = true
  AND old.retired IS NULL
RETURN written, count(old) AS superseded
"""


def stage_predictions_spark(spark: Any, settings: Neo4jSettings, client: Neo4jClient, run_id: str,
                            rows: Sequence[wb.PredictionRow], *, model: str, model_version: str,
                            lock: str = LOCK_NAME, batch_size: int = 2000) -> wb.StageResult:
    """Stage ``rows`` as ``run_id``'s predictions through the connector (query mode, one write partition,
    ``batch_size`` rows per transaction, each fenced by the run's lock): the same edges and properties as
    :func:`graph.writeback.write_predictions`; a retried task or a second call changes nothing. The
    caller commits with :func:`graph.writeback.commit_predictions`. Raises
    :class:`graph.runs.LockLost` when the run does not hold the lock after the write."""
    t = now().isoformat()
    data: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for r in rows:
        p = r.params()
        data[r.attribute == wb.BRAND].append({"product": p["product"], "attribute": p["attribute"], "norm": p["norm"],
                                              "run": run_id, "lock": lock, "now": t, "model": model,
                                              "model_version": model_version, **p["props"]})
        if set(p["props"]) != set(_PROPS):
            raise SparkEngineError(f"PredictionRow.params() has properties {sorted(p['props'])}, the Spark write "
                                   f"knows {sorted(_PROPS)}: update attrgraph.spark._PROPS")
    for is_brand, items in data.items():
        if not items:
            continue
        target = "Brand {key: r.norm}" if is_brand else "Value {attribute: r.attribute, norm: r.norm}"
        df = spark.createDataFrame(items, _ROW_SCHEMA).coalesce(1)  # one write partition: see the module docstring
        w = (df.write.format(FORMAT).mode("Append").option("url", settings.uri)
             .option("query", _spark_stage_query(target)).option("batch.size", str(batch_size))
             .option("transaction.retries", "5"))
        if settings.password:
            w = w.option("authentication.basic.username", settings.user).option("authentication.basic.password",
                                                                              settings.password)
        else:
            w = w.option("authentication.type", "none")
        if settings.database:
            w = w.option("database", settings.database)
        try:
            w.save()
        except Exception as e:  # noqa: BLE001 - py4j wraps the JVM's errors
            msg = str(e).split("\n")[0][:500]
            if settings.password:
                msg = msg.replace(settings.password, "***")
            raise SparkEngineError(f"spark write-back of run {run_id} failed: {msg}") from None
    holder = lock_state(client, lock).holder
    if holder != run_id:
        raise LockLost(f"run {run_id} no longer holds the completion lock {lock!r} (holder: {holder}); "
                       f"its Spark write-back wrote nothing after losing it")
    rec = client.read(_STAGED_COUNTS, {"run": run_id})[0]
    written = int(rec["written"] or 0)
    return wb.StageResult(written, int(rec["superseded"] or 0), len(rows) - written)


# -- the engine behind `attrgraph complete --engine spark` --------------------------------------------------
class SparkEngine:
    """The completion run's bulk stages on Spark (see the module docstring); the rest stays on the driver."""

    name = "spark"

    def __init__(self, opts: SparkOptions):
        _pyspark()  # a missing extra fails before the run takes the lock
        self.opts = opts
        self._spark = None

    @property
    def spark(self) -> Any:
        if self._spark is None:
            self._spark = spark_session(self.opts)
        return self._spark

    def export(self, client: Neo4jClient, out_dir: Path) -> ExportSummary:
        return export_snapshot_spark(self.spark, client.settings, out_dir, partitions=self.opts.partitions)

    def text_features(self, snap: Any, cfg: Any) -> Any:
        return text_features_spark(self.spark, snap, cfg)

    def predict(self, pred: Any, snap: Any, model_dir: Path, *, products: np.ndarray, top_k: int,
                attributes: Sequence[str] | None) -> Any:
        return predict_spark(self.spark, snap, model_dir, pred.split.attribute_names, products=products, top_k=top_k,
                             attributes=attributes, partitions=self.opts.partitions)

    def stage(self, client: Neo4jClient, run_id: str, rows: Sequence[wb.PredictionRow], *, model: str,
              model_version: str, batch_size: int, on_batch: Callable[[int, int], None] | None = None) -> wb.StageResult:
        res = stage_predictions_spark(self.spark, client.settings, client, run_id, rows, model=model,
                                      model_version=model_version, batch_size=batch_size)
        if on_batch:
            on_batch(len(rows), len(rows))
        return res

    def close(self) -> None:
        """The session is kept for the process's next run (a driver JVM starts once); see :func:`stop`."""


def stop() -> None:
    """Stop this process's Spark session, if any."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return
    s = SparkSession.getActiveSession()
    if s is not None:
        s.stop()


__all__ = [
    "CONNECTOR", "SparkEngine", "SparkEngineError", "SparkOptions", "ensure_connector_jar", "export_snapshot_spark",
    "node_counts_spark", "predict_spark", "read_query", "spark_session", "stage_predictions_spark", "stop",
    "text_features_spark",
]
