"""Ingest one catalog file into the product graph: read, map, batch, write, report."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import neo4j
from neo4j.exceptions import ClientError, Neo4jError, ServiceUnavailable, SessionExpired

from graph.connection import Neo4jClient
from graph.schema import ensure_schema

from .errors import IngestError, Rejection, RowError
from .mapping import MappedProduct, Mapping
from .readers import CountingReader, format_of, get_reader, open_binary
from .writer import GraphWriter

T = TypeVar("T")
ProgressFn = Callable[[int, int, int], None]  # (bytes read, total bytes, rows read)


@dataclass
class IngestReport:
    run_id: str
    file: str
    mapping: str
    rows_read: int = 0
    products_created: int = 0
    products_updated: int = 0
    products_unchanged: int = 0
    facts_written: int = 0
    facts_retracted: int = 0
    rows_rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)  # the first ``max_rejections_kept``
    seconds: float = 0.0
    status: str = "running"

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("rejections")
        d["seconds"] = round(d["seconds"], 2)
        return d


# MERGE on the run's unique id: retried after a lost commit answer, it records the run once.
_RUN_START = """
MERGE (r:IngestRun {id: $id})
  ON CREATE SET r.file = $file, r.mapping = $mapping, r.source = $source, r.started_at = $now, r.status = 'running'
"""
_RUN_END = """
MATCH (r:IngestRun {id: $id})
SET r += $stats, r.finished_at = $now
"""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def ingest_file(
    client: Neo4jClient,
    path: str | Path,
    mapping: Mapping | str | Path,
    *,
    batch_size: int = 2000,
    batch_bytes: int = 32 * 2**20,
    progress: ProgressFn | None = None,
    max_rejections_kept: int = 10_000,
    limit: int | None = None,
) -> IngestReport:
    """Stream ``path`` through ``mapping`` into Neo4j.

    Each batch (``batch_size`` products, or fewer when their text passes ``batch_bytes``) is
    one transaction. A row that cannot be read or mapped is rejected alone
    (file, line, field, reason in the report). A batch the database refuses is retried
    row by row, so only the offending rows are rejected. If the database goes away, an
    :class:`IngestError` says which rows were stored; rerunning is safe (idempotent).
    """
    if batch_size < 1:
        raise IngestError(f"batch_size must be at least 1, got {batch_size}")
    path = Path(path)
    if not isinstance(mapping, Mapping):
        mapping = Mapping.load(mapping)
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    fmt = mapping.format or format_of(path)
    reader = get_reader(fmt)
    ensure_schema(client)

    report = IngestReport(run_id=f"ingest-{uuid.uuid4().hex[:12]}", file=str(path), mapping=mapping.name)
    writer = GraphWriter(source=mapping.source, run_id=report.run_id, property_names=tuple(mapping.properties))
    client.write(_RUN_START, {"id": report.run_id, "file": str(path), "mapping": mapping.name,
                              "source": mapping.source, "now": _now()})
    t0 = time.perf_counter()
    total = path.stat().st_size
    first_line: dict[str, int] = {}  # product id -> line it was first seen on (duplicates are rejected)
    last_stored_line = 0

    def reject(line: int, fld: str | None, reason: str) -> None:
        report.rows_rejected += 1
        if len(report.rejections) < max_rejections_kept:
            report.rejections.append(Rejection(str(path), line, fld, reason))

    def write(batch: list[tuple[int, MappedProduct, str]]) -> None:
        nonlocal last_stored_line
        try:
            _write_batch(client, writer, batch, report)
        except (ClientError, neo4j.exceptions.DatabaseError) as e:
            # A statement the database refused (e.g. a value too large for its index): find the
            # offending rows by writing one row per transaction, keep the rest.
            failures = []
            for item in batch:
                try:
                    _write_batch(client, writer, [item], report)
                except (ClientError, neo4j.exceptions.DatabaseError) as e1:
                    failures.append((item[0], e1))
            if len(failures) == len(batch) and len(batch) > 1 and not isinstance(e, ClientError):
                raise  # every row fails: the database is in trouble, not the data
            for line, e1 in failures:
                reject(line, None, f"refused by Neo4j: {e1.code}: {e1.message}")
        last_stored_line = batch[-1][0]

    def batches(stream: BinaryIO) -> Iterator[list[tuple[int, MappedProduct, str]]]:
        """Read and map rows into batches (runs in a reader thread, overlapping the database's work)."""
        batch: list[tuple[int, MappedProduct, str]] = []
        size = 0
        for line, rec in reader(stream, **mapping.csv):
            if limit is not None and report.rows_read >= limit:
                break
            report.rows_read += 1
            if isinstance(rec, RowError):
                reject(line, rec.field, rec.reason)
                continue
            try:
                prod = mapping.apply(rec)
            except RowError as e:
                reject(line, e.field, e.reason)
                continue
            if prod.id in first_line:
                reject(line, "id", f"duplicate id {prod.id[:80]!r} (first seen on line {first_line[prod.id]})")
                continue
            first_line[prod.id] = line
            batch.append((line, prod, prod.content_hash(mapping.name)))
            size += _approx_bytes(prod)
            if len(batch) >= batch_size or size >= batch_bytes:  # bounded transaction memory
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    counter = CountingReader(open(path, "rb"))
    try:
        with open_binary(path, counter) as stream:
            for batch in prefetch(batches(stream), depth=2):
                write(batch)
                if progress:
                    progress(counter.bytes_read, total, report.rows_read)
    except (ServiceUnavailable, SessionExpired, neo4j.exceptions.DatabaseError, OSError) as e:
        report.status = "failed"
        report.seconds = time.perf_counter() - t0
        _finish(client, report, quiet=True)
        upto = f"rows up to line {last_stored_line} are stored" if last_stored_line else "no row was stored"
        raise IngestError(f"{path}: ingest stopped: {e}; {upto}; rerunning is safe (unchanged rows are skipped)") from e
    except EOFError as e:  # truncated gzip
        report.status = "failed"
        _finish(client, report, quiet=True)
        raise IngestError(f"{path}: file is truncated or corrupt ({e}); rows up to line {last_stored_line} are stored") from e
    report.rejections.sort(key=lambda r: r.line)  # the reader thread and the writer both reject
    if progress:
        progress(counter.bytes_read, total, report.rows_read)
    report.seconds = time.perf_counter() - t0
    report.status = "completed"
    _finish(client, report)
    return report


def _approx_bytes(p: MappedProduct) -> int:
    n = len(p.title or "") + len(p.description or "") + 64 * len(p.facts)
    return n + sum(len(v) for v in p.properties.values() if isinstance(v, str))


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``depth`` ahead; its exceptions re-raise here.

    Parsing and mapping rows is pure Python; while the driver waits for Neo4j the GIL is free,
    so the next batch is prepared while the current one is written.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # handed to the consumer, which re-raises it
            q.put(e)

    t = threading.Thread(target=run, name="attrgraph-ingest-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def _write_batch(client: Neo4jClient, writer: GraphWriter, items: list[tuple[int, MappedProduct, str]],
                 report: IngestReport) -> None:
    now = _now()
    stats, learned = client.write_tx(lambda tx: writer.write(tx, [(p, h) for _, p, h in items], now))
    writer.remember(learned)
    report.products_created += stats.created
    report.products_updated += stats.updated
    report.products_unchanged += stats.unchanged
    report.facts_written += stats.facts_written
    report.facts_retracted += stats.facts_retracted


def _finish(client: Neo4jClient, report: IngestReport, quiet: bool = False) -> None:
    stats = report.summary()
    for k in ("run_id", "file", "mapping"):
        stats.pop(k)
    try:
        client.write(_RUN_END, {"id": report.run_id, "stats": stats, "now": _now()})
    except Neo4jError:
        if not quiet:
            raise
    except ServiceUnavailable:
        if not quiet:
            raise
