"""Completion runs in Neo4j: the ``(:CompletionRun)`` record and the lock that keeps runs apart.

A run is recorded before it writes anything::

    (:CompletionRun {id, status, started_at, finished_at, heartbeat_at, host, pid, mode, model,
                     model_version, snapshot, config (JSON), counts..., metrics (JSON), stages (JSON),
                     error, run_dir})

``status`` is ``running`` while the run works, then ``committed`` (its predictions are final),
``failed`` (it stopped; ``cleaned = true`` once its partial writes are undone) or ``rolled_back``.
A run that is ``running``, or ``failed`` and not yet cleaned, is *pending*: readers show none of its
predicted edges and still show as current what it is replacing (:data:`graph.writeback.PENDING_RUNS`).

One ``(:CompletionLock {name})`` node per lock name (``completion`` by default) says which run holds
it (``holder``), from which host and process, with a heartbeat. Acquiring takes the node's write
lock inside one transaction, so two runs can never both succeed. A lock is *stale* (taken over,
and its run marked failed) when its heartbeat is older than ``stale_seconds``, when its process is
gone (same host), when it is held by a run that is no longer ``running``, or by an earlier run of
this very process. Every write batch of a run checks, in its own transaction, that the run still
holds the lock (:func:`check_holder`): a run whose lock was taken over cannot write any more.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import neo4j

from .api import plain
from .connection import Neo4jClient
from .errors import GraphError

LOCK_NAME = "completion"
# lock holders alive in this process: a holder with our pid that is not here is a dead earlier run
ACTIVE: set[str] = set()
RUN_STATUSES = ("running", "committed", "failed", "rolled_back")


class RunError(GraphError):
    """A completion run cannot start, record itself, or be found."""


class LockHeld(RunError):
    """Another live completion run holds the lock."""


class LockLost(RunError):
    """This run no longer holds the lock (another run took it over as stale): it must stop writing."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id(t: datetime | None = None) -> str:
    t = t or now()
    return f"cr-{t.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped by its parent) is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class LockInfo:
    name: str
    holder: str | None
    host: str | None
    pid: int | None
    acquired_at: datetime | None
    heartbeat_at: datetime | None
    holder_status: str | None


@dataclass(frozen=True)
class Acquired:
    run_id: str
    took_over: LockInfo | None  # the stale lock this run took over, if any


@dataclass(frozen=True)
class RunRecord:
    id: str
    status: str
    mode: str | None
    started_at: datetime | None
    finished_at: datetime | None
    model: str | None
    model_version: str | None
    snapshot: str | None
    counts: dict[str, int]
    metrics: dict[str, Any]
    stages: dict[str, float]
    config: dict[str, Any]
    error: str | None
    run_dir: str | None
    host: str | None
    pid: int | None
    cleaned: bool | None
    dry_run: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


COUNT_KEYS = ("products", "products_scored", "products_skipped", "slots", "candidates", "accepted", "needs_review",
              "rejected", "abstained", "review_rejected", "written", "superseded", "retired",
              "spans", "new_candidates", "new_rejected", "proposed", "aliases")  # the last five: extraction

_LOCK_STATE = """
MERGE (l:CompletionLock {name: $name})
SET l.touched_at = $now
WITH l
OPTIONAL MATCH (r:CompletionRun {id: l.holder})
RETURN l.holder AS holder, l.host AS host, l.pid AS pid, l.acquired_at AS acquired_at,
       l.heartbeat_at AS heartbeat_at, r.status AS holder_status
"""

_TAKE_LOCK = """
MATCH (l:CompletionLock {name: $name})
SET l.holder = $run, l.host = $host, l.pid = $pid, l.acquired_at = $now, l.heartbeat_at = $now
WITH l WHERE $record
MERGE (r:CompletionRun {id: $run})
  ON CREATE SET r.status = 'running', r.started_at = $now, r.heartbeat_at = $now, r.host = $host, r.pid = $pid,
                r.mode = $mode, r.config = $config, r.run_dir = $run_dir, r.lock = $name
"""

_RELEASE = """
MATCH (l:CompletionLock {name: $name}) WHERE l.holder = $run
SET l.holder = null, l.host = null, l.pid = null, l.released_at = $now
RETURN count(l) AS released
"""

_HEARTBEAT = """
MATCH (l:CompletionLock {name: $name}) WHERE l.holder = $run
SET l.heartbeat_at = $now
WITH l
MATCH (r:CompletionRun {id: $run}) SET r.heartbeat_at = $now
RETURN count(l) AS held
"""



def _lock_info(name: str, row: dict[str, Any] | None) -> LockInfo:
    row = row or {}
    return LockInfo(name, row.get("holder"), row.get("host"), row.get("pid"), plain(row.get("acquired_at")),
                    plain(row.get("heartbeat_at")), row.get("holder_status"))


def lock_state(client: Neo4jClient, name: str = LOCK_NAME) -> LockInfo:
    rows = client.read("""
        MATCH (l:CompletionLock {name: $name})
        OPTIONAL MATCH (r:CompletionRun {id: l.holder})
        RETURN l.holder AS holder, l.host AS host, l.pid AS pid, l.acquired_at AS acquired_at,
               l.heartbeat_at AS heartbeat_at, r.status AS holder_status""", {"name": name})
    return _lock_info(name, rows[0] if rows else None)


def stale_reason(info: LockInfo, *, stale_seconds: float, t: datetime | None = None,
                 own_runs: set[str] | None = None) -> str | None:
    """Why a held lock may be taken over, or ``None`` when its holder looks alive."""
    if info.holder is None:
        return None
    t = t or now()
    if info.holder_status is not None and info.holder_status != "running":
        return f"its run {info.holder} is {info.holder_status}"
    if own_runs and info.holder in own_runs and info.holder not in ACTIVE:
        return f"it is held by {info.holder}, an earlier run of this process"
    if info.host == socket.gethostname() and info.pid is not None:
        if info.pid == os.getpid():
            if info.holder in ACTIVE:
                return None
            return f"it is held by {info.holder}, an earlier run of this process"
        if not _pid_alive(int(info.pid)):
            return f"its process {info.pid} on {info.host} is gone"
    if info.heartbeat_at is not None:
        age = (t - info.heartbeat_at).total_seconds()
        if age > stale_seconds:
            return f"its last heartbeat is {age:.0f} s old (stale after {stale_seconds:.0f} s)"
    elif info.holder_status is None:
        return "it has no heartbeat and no run record"
    return None


def acquire(client: Neo4jClient, run_id: str, *, name: str = LOCK_NAME, stale_seconds: float = 120.0,
            mode: str = "full", config: dict[str, Any] | None = None, run_dir: str | None = None,
            own_runs: set[str] | None = None, record: bool = True) -> Acquired:
    """Take the lock for ``run_id`` and (``record``) record the run as ``running``, in one transaction.

    Raises :class:`LockHeld` when a live run holds it; takes over a stale one (see :func:`stale_reason`).
    """
    host, pid = socket.gethostname(), os.getpid()
    cfg = json.dumps(config or {}, sort_keys=True, default=str)

    def work(tx: neo4j.ManagedTransaction) -> Acquired:
        t = now()
        row = tx.run(_LOCK_STATE, {"name": name, "now": t}).single()
        info = _lock_info(name, row.data() if row else None)
        took = None
        if info.holder is not None and info.holder != run_id:
            why = stale_reason(info, stale_seconds=stale_seconds, t=t, own_runs=own_runs)
            if why is None:
                age = f", heartbeat {(t - info.heartbeat_at).total_seconds():.0f} s ago" if info.heartbeat_at else ""
                raise LockHeld(f"completion lock {name!r} is held by run {info.holder} (pid {info.pid} on {info.host}"
                               f"{age}); wait for it, or after a crash run `attrgraph runs unlock` "
                               f"(it becomes stale by itself after {stale_seconds:.0f} s without heartbeat)")
            took = info
        tx.run(_TAKE_LOCK, {"name": name, "run": run_id, "host": host, "pid": pid, "now": t, "mode": mode,
                            "config": cfg, "run_dir": run_dir, "record": record}).consume()
        return Acquired(run_id, took)

    acq = client.write_tx(work)
    ACTIVE.add(run_id)
    return acq


def release(client: Neo4jClient, run_id: str, *, name: str = LOCK_NAME) -> bool:
    ACTIVE.discard(run_id)
    rows = client.write_tx(lambda tx: tx.run(_RELEASE, {"name": name, "run": run_id, "now": now()}).data())
    return bool(rows and rows[0]["released"])


def force_unlock(client: Neo4jClient, *, name: str = LOCK_NAME) -> LockInfo:
    """Clear the lock whoever holds it (the holder's run is then recovered as failed by the next run)."""
    info = lock_state(client, name)
    client.write("MATCH (l:CompletionLock {name: $name}) SET l.holder = null, l.host = null, l.pid = null, "
                 "l.released_at = $now", {"name": name, "now": now()})
    return info


def heartbeat(client: Neo4jClient, run_id: str, *, name: str = LOCK_NAME) -> bool:
    rows = client.write_tx(lambda tx: tx.run(_HEARTBEAT, {"name": name, "run": run_id, "now": now()}).data())
    return bool(rows and rows[0]["held"])


_FENCE = """
OPTIONAL MATCH (l:CompletionLock {name: $name})
SET (CASE WHEN l.holder = $run THEN l END).fenced_at = $now
RETURN l.holder AS holder
"""


def check_holder(tx: neo4j.ManagedTransaction, run_id: str, name: str = LOCK_NAME) -> None:
    """Inside a write transaction: raise :class:`LockLost` unless ``run_id`` holds the lock.

    Run first in every write batch, so a run that lost its lock cannot commit another write. The lock
    node stays write-locked until the transaction ends, so no other run can take the lock over (and
    start undoing this run) while the batch is being written."""
    row = tx.run(_FENCE, {"name": name, "run": run_id, "now": now()}).single()
    holder = row["holder"] if row else None
    if holder != run_id:
        raise LockLost(f"run {run_id} no longer holds the completion lock {name!r} (holder: {holder}); "
                       f"it stops without writing more")


class Heartbeat:
    """A daemon thread that refreshes the lock's heartbeat every ``every`` seconds while a run works.

    ``lost`` becomes true when the lock is no longer ours; ``error`` keeps the last database error
    (a heartbeat that cannot reach Neo4j does not stop the run: its own writes will fail loudly)."""

    def __init__(self, client: Neo4jClient, run_id: str, *, name: str = LOCK_NAME, every: float = 15.0):
        self.client, self.run_id, self.name, self.every = client, run_id, name, every
        self.lost = False
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not heartbeat(self.client, self.run_id, name=self.name):
                    self.lost = True
                    return
            except Exception as e:  # noqa: BLE001 - a heartbeat must never kill the run thread
                self.error = f"{type(e).__name__}: {e}"


# -- run records ----------------------------------------------------------------------------------
_FINISH = """
MATCH (r:CompletionRun {id: $run})
SET r += $props, r.finished_at = $now
"""

_RUN_FIELDS = """
RETURN r.id AS id, r.status AS status, r.mode AS mode, r.started_at AS started_at, r.finished_at AS finished_at,
       r.model AS model, r.model_version AS model_version, r.snapshot AS snapshot, r.metrics AS metrics,
       r.stages AS stages, r.config AS config, r.error AS error, r.run_dir AS run_dir, r.host AS host, r.pid AS pid,
       r.cleaned AS cleaned, properties(r) AS props
"""


def _loads(s: Any) -> Any:
    if s is None:
        return {}
    try:
        return json.loads(s)
    except (TypeError, ValueError):
        return {}


def _record(row: dict[str, Any]) -> RunRecord:
    props = row.get("props") or {}
    counts = {k: int(props[k]) for k in COUNT_KEYS if props.get(k) is not None}
    return RunRecord(row["id"], row["status"], row.get("mode"), plain(row.get("started_at")),
                     plain(row.get("finished_at")), row.get("model"), row.get("model_version"), row.get("snapshot"),
                     counts, _loads(row.get("metrics")), _loads(row.get("stages")), _loads(row.get("config")),
                     row.get("error"), row.get("run_dir"), row.get("host"), row.get("pid"), row.get("cleaned"))


def finish_run(client: Neo4jClient, run_id: str, *, status: str, counts: dict[str, int] | None = None,
               metrics: dict[str, Any] | None = None, stages: dict[str, float] | None = None,
               error: str | None = None, extra: dict[str, Any] | None = None, tx: Any = None) -> None:
    """Record the end of a run (``status`` committed or failed) with its counts, metrics and stage times."""
    if status not in RUN_STATUSES:
        raise RunError(f"unknown run status {status!r}; valid: {', '.join(RUN_STATUSES)}")
    props: dict[str, Any] = {"status": status}
    props.update({k: int(v) for k, v in (counts or {}).items()})
    if metrics is not None:
        props["metrics"] = json.dumps(metrics, sort_keys=True, default=str)
    if stages is not None:
        props["stages"] = json.dumps({k: round(float(v), 3) for k, v in stages.items()}, sort_keys=True)
    if error is not None:
        props["error"] = error[:4000]
    props.update(extra or {})
    params = {"run": run_id, "props": props, "now": now()}
    if tx is not None:
        tx.run(_FINISH, params).consume()
    else:
        client.write(_FINISH, params)


def update_run(client: Neo4jClient, run_id: str, props: dict[str, Any]) -> None:
    client.write("MATCH (r:CompletionRun {id: $run}) SET r += $props", {"run": run_id, "props": props})


def get_run(client: Neo4jClient, run_id: str) -> RunRecord:
    rows = client.read("MATCH (r:CompletionRun {id: $run})" + _RUN_FIELDS, {"run": run_id})
    if not rows:
        known = [r.id for r in list_runs(client, limit=5)]
        raise RunError(f"no completion run {run_id!r}; recent runs: {', '.join(known) or '(none)'}")
    return _record(rows[0])


def list_runs(client: Neo4jClient, *, limit: int = 20, status: str | None = None) -> list[RunRecord]:
    rows = client.read("MATCH (r:CompletionRun) WHERE $status IS NULL OR r.status = $status" + _RUN_FIELDS
                       + " ORDER BY r.started_at DESC, r.id DESC LIMIT $limit", {"limit": limit, "status": status})
    return [_record(r) for r in rows]


def last_committed(client: Neo4jClient) -> RunRecord | None:
    runs = list_runs(client, limit=1, status="committed")
    return runs[0] if runs else None


def dead_runs(client: Neo4jClient, current: str) -> list[str]:
    """Runs that need recovery: still ``running`` but not ``current`` (their process died while it held
    or waited for the lock), or ``failed`` with their partial writes not yet undone."""
    rows = client.read("""
        MATCH (r:CompletionRun)
        WHERE r.id <> $current AND (r.status = 'running' OR (r.status = 'failed' AND coalesce(r.cleaned, false) = false))
        RETURN r.id AS id ORDER BY r.started_at""", {"current": current})
    return [r["id"] for r in rows]


__all__ = [
    "Acquired", "COUNT_KEYS", "Heartbeat", "LOCK_NAME", "LockHeld", "LockInfo", "LockLost", "RUN_STATUSES",
    "RunError", "RunRecord", "acquire", "check_holder", "dead_runs", "finish_run", "force_unlock", "get_run",
    "heartbeat", "last_committed", "list_runs", "lock_state", "new_run_id", "release", "stale_reason", "update_run",
]
