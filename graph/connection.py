"""One place that talks to Neo4j: a driver, the session database, retries, clear errors.

Every query string passed here is fixed text from this codebase or ``queries/``;
values always travel as parameters.

**Transactions.** Every read and write is a *managed* transaction (``execute_read`` /
``execute_write``), retried on the errors the driver calls retryable (transient errors, leader
changes, lost connections, a restarting server) for up to ``max_retry_seconds`` with delays that
double up to 4 s, so the same code runs against one server, a cluster (``neo4j://``) or Aura
(``neo4j+s://``), and carries on across a restart. The one exception is a ``CALL { ... } IN
TRANSACTIONS`` statement, which Neo4j only runs in an implicit (auto-commit) transaction:
:meth:`Neo4jClient.run_in_transactions` retries those itself, and each such statement in this
codebase is idempotent by construction (said where it is used).

A write whose commit was sent but whose answer got lost (the connection dropped during the commit:
``IncompleteCommit``) is not retried by the driver, because it may have committed. Every write in
this codebase is idempotent by construction (``MERGE``, creates guarded by an existence check,
``SET`` of fixed values, batched deletes until nothing is left), so :meth:`Neo4jClient.write` and
:meth:`Neo4jClient.write_tx` run it again; a caller with a write that is not idempotent passes
``idempotent=False`` and gets the error.

**Causal consistency.** Every session shares the driver's bookmark manager, so a read that
follows a write, in any session of this client, sees that write even when a cluster routes it
to a follower.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import neo4j
from neo4j import GraphDatabase
from neo4j.exceptions import (
    AuthError, ConfigurationError, DriverError, IncompleteCommit, Neo4jError, ServiceUnavailable,
)

from .errors import ConnectionFailed
from .settings import DEFAULT_MAX_RETRY_SECONDS, Neo4jSettings, SettingsError

T = TypeVar("T")
log = logging.getLogger(__name__)

INITIAL_DELAY_S = 0.25  # first retry delay; doubles per retry up to MAX_DELAY_S
MAX_DELAY_S = 4.0

_IN_TRANSACTIONS = re.compile(r"\bIN\s+(\d+\s+|\$\w+\s+)?(CONCURRENT\s+)?TRANSACTIONS\b", re.IGNORECASE)


def driver_target(settings: Neo4jSettings) -> tuple[str, dict[str, Any]]:
    """The URI and the driver's TLS options for ``settings``.

    With ``trusted_ca`` (``NEO4J_TRUSTED_CA``) the connection is encrypted and the server's certificate
    is verified against that CA file: ``neo4j+s://`` (or ``bolt+s://``) then becomes ``neo4j://`` with
    ``encrypted=True, trusted_certificates=TrustCustomCAs(ca)``, because the driver takes TLS options
    only with the plain schemes. ``+ssc`` (trust any certificate) and a CA contradict each other."""
    uri, ca = settings.uri, settings.trusted_ca
    if not ca:
        return uri, {}
    path = Path(ca).expanduser()
    if not path.is_file():
        raise SettingsError(f"NEO4J_TRUSTED_CA: no CA certificate file at {str(path)!r}")
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    if scheme.endswith("+ssc"):
        raise SettingsError(f"NEO4J_URI {uri!r} trusts any certificate (+ssc) but NEO4J_TRUSTED_CA asks to verify "
                            f"it against {str(path)!r}; use {scheme[:-4]}+s://{rest}")
    base = scheme[:-2] if scheme.endswith("+s") else scheme
    return f"{base}://{rest}", {"encrypted": True, "trusted_certificates": neo4j.TrustCustomCAs(str(path))}


def _retryable(e: BaseException) -> bool:
    """A failure the same statement may simply be tried again after (the driver's own rule, plus a
    commit whose answer got lost, which only idempotent work may retry)."""
    if isinstance(e, IncompleteCommit):
        return True
    return isinstance(e, (DriverError, Neo4jError)) and e.is_retryable()


class Neo4jClient:
    """A thin wrapper over the official driver.

    ``read``/``write`` run one parameterised statement in a managed transaction and return plain
    dicts (or the write's counters); ``read_tx``/``write_tx`` run a function of several statements
    in one transaction; ``read_each`` hands the records of a large result to a function one at a
    time inside one read transaction; ``schema`` creates constraints and indexes;
    ``run_in_transactions`` runs a ``CALL { ... } IN TRANSACTIONS`` statement with retries.
    """

    def __init__(self, settings: Neo4jSettings | None = None, **driver_kwargs: Any):
        self.settings = settings or Neo4jSettings.resolve()
        s = self.settings
        if s.password is None and s.local:
            raise ConnectionFailed(
                f"the local Neo4j has never been started (no password file); run `attrgraph db start` "
                f"or set NEO4J_URI to use another Neo4j"
            )
        auth = (s.user, s.password) if s.password is not None else None
        uri, tls = driver_target(s)
        driver_kwargs.setdefault("connection_timeout", 10.0)
        driver_kwargs.setdefault("max_transaction_retry_time",
                                 s.max_retry_seconds if s.max_retry_seconds is not None else DEFAULT_MAX_RETRY_SECONDS)
        # Notifications (e.g. "relationship type does not exist yet" on an empty graph) are not errors.
        driver_kwargs.setdefault("notifications_min_severity", "OFF")
        for k, v in tls.items():
            driver_kwargs.setdefault(k, v)
        try:
            self._driver = GraphDatabase.driver(uri, auth=auth, **driver_kwargs)
        except ConfigurationError as e:
            raise ConnectionFailed(f"cannot connect to {s.uri}: {e}") from None
        self.max_retry_seconds = float(driver_kwargs["max_transaction_retry_time"])
        # One bookmark manager for every session of this client: a read after a write (in any session)
        # sees the write, even on a cluster follower.
        self.bookmarks = self._driver.execute_query_bookmark_manager
        self.database = s.database

    def verify(self) -> None:
        """Fail fast with a message that says where we tried and what to do."""
        s = self.settings
        try:
            self._driver.verify_connectivity()
        except AuthError as e:
            raise ConnectionFailed(f"Neo4j at {s.uri} refused the credentials of user {s.user!r}: {e.message}") from None
        except (ServiceUnavailable, OSError) as e:
            hint = "run `attrgraph db start`" if s.local else "check NEO4J_URI and that the server is up"
            if s.scheme.endswith("+s") or s.trusted_ca:
                hint += " (and, for TLS, that its certificate is signed by a CA the system or NEO4J_TRUSTED_CA trusts)"
            raise ConnectionFailed(f"no Neo4j answers at {s.uri} ({e}); {hint}") from None

    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> "Neo4jClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session(self, **kw: Any) -> neo4j.Session:
        """A session on the configured database that shares this client's bookmarks."""
        kw.setdefault("bookmark_manager", self.bookmarks)
        return self._driver.session(database=self.database, **kw)

    @property
    def driver(self) -> neo4j.Driver:
        return self._driver

    # -- reads -------------------------------------------------------------------------------------
    def read_tx(self, fn: Callable[[neo4j.ManagedTransaction], T], *, fetch_size: int | None = None) -> T:
        """Run ``fn(tx)`` in one managed read transaction (routed to a reader on a cluster; retried)."""
        kw: dict[str, Any] = {"default_access_mode": neo4j.READ_ACCESS}
        if fetch_size is not None:
            kw["fetch_size"] = fetch_size
        return self._managed(fn, kw, idempotent=True)  # a read may always run again

    def read(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.read_tx(lambda tx: [r.data() for r in tx.run(query, params or {})])

    def read_each(self, query: str, params: dict[str, Any] | None, fn: Callable[[neo4j.Record], None], *,
                  restart: Callable[[], None] | None = None, fetch_size: int = 5000) -> int:
        """Hand every record of ``query`` to ``fn``, streamed (``fetch_size`` at a time), inside one managed
        read transaction; returns how many records the successful attempt delivered.

        When the transaction is retried (a lost connection, a restart, a leader change), the records are
        delivered again from the first one: ``restart()`` is called before every attempt after the
        first, so the consumer can drop what it kept from the failed one. Without ``restart`` the
        consumer must be idempotent."""
        attempts = 0

        def work(tx: neo4j.ManagedTransaction) -> int:
            nonlocal attempts
            if attempts and restart is not None:
                restart()
            attempts += 1
            n = 0
            for rec in tx.run(query, params or {}):
                fn(rec)
                n += 1
            return n

        return self.read_tx(work, fetch_size=fetch_size)

    # -- retries ----------------------------------------------------------------------------------
    def _retrying(self, attempt: Callable[[], T], *, idempotent: bool) -> T:
        """``attempt()`` until it succeeds, a failure is not retryable, or ``max_retry_seconds`` have passed
        since the first failure. The delays double from 0.25 s up to :data:`MAX_DELAY_S` (with jitter): the
        driver's own retry uses the same rule (``is_retryable``) but doubles without a cap, so a server
        that is back after 20 s would be tried again only after 31 s."""
        deadline: float | None = None
        delay = INITIAL_DELAY_S
        while True:
            try:
                return attempt()
            except (DriverError, Neo4jError) as e:
                if isinstance(e, IncompleteCommit) and not idempotent:
                    raise
                if not _retryable(e):
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.max_retry_seconds
                if now >= deadline:
                    raise
                wait = min(delay * random.uniform(0.8, 1.2), max(deadline - now, 0.0))
                log.warning("Neo4j: %s: %s; retrying in %.1f s", type(e).__name__, e, wait)
                time.sleep(wait)
                delay = min(delay * 2, MAX_DELAY_S)

    def _managed(self, fn: Callable[[neo4j.ManagedTransaction], T], session_kw: dict[str, Any],
                 idempotent: bool) -> T:
        """One managed transaction (``execute_read`` with ``READ_ACCESS`` in ``session_kw``, else
        ``execute_write``), retried by :meth:`_retrying`; each attempt in a fresh session (the driver's
        own retry inside it turned off, so the two never multiply)."""
        read = session_kw.get("default_access_mode") == neo4j.READ_ACCESS

        def attempt() -> T:
            with self.session(max_transaction_retry_time=0, **session_kw) as s:
                return s.execute_read(fn) if read else s.execute_write(fn)

        return self._retrying(attempt, idempotent=idempotent)

    # -- writes ------------------------------------------------------------------------------------
    def write(self, query: str, params: dict[str, Any] | None = None, *,
              idempotent: bool = True) -> neo4j.SummaryCounters:
        """One statement in a managed write transaction (see the module docstring on ``idempotent``)."""
        def work(tx: neo4j.ManagedTransaction) -> neo4j.SummaryCounters:
            return tx.run(query, params or {}).consume().counters

        return self._managed(work, {}, idempotent)

    def write_tx(self, fn: Callable[[neo4j.ManagedTransaction], T], *, idempotent: bool = True) -> T:
        """Run ``fn(tx)`` in one managed write transaction: all of it commits or none of it does. ``fn``
        may run more than once (retries): it returns what it found, and keeps no state across calls."""
        return self._managed(fn, {}, idempotent)

    def schema(self, statements: Sequence[str], *, await_seconds: int | None = 300) -> None:
        """Schema commands (``CREATE CONSTRAINT|INDEX ... IF NOT EXISTS``, ``DROP INDEX ... IF EXISTS``),
        each in its own managed write transaction (idempotent: ``IF [NOT] EXISTS``), then wait up to
        ``await_seconds`` until every index is online."""
        for stmt in statements:
            self.write(stmt)
        if await_seconds is not None:
            self.write("CALL db.awaitIndexes($s)", {"s": int(await_seconds)})

    def run_in_transactions(self, query: str, params: dict[str, Any] | None = None) -> None:
        """A ``CALL { ... } IN TRANSACTIONS`` statement, which needs an implicit (auto-commit) transaction,
        retried here on the errors the driver retries managed transactions on (and on a lost commit
        answer). Such a statement commits batch by batch, so a retry runs it again over what is left:
        every one must be idempotent by construction (e.g. delete what matches until nothing does)."""
        if not _IN_TRANSACTIONS.search(query):
            raise ValueError("run_in_transactions() is only for CALL { ... } IN TRANSACTIONS; "
                             "use write() or write_tx() (managed, retried) for everything else")

        def attempt() -> None:
            with self.session() as s:
                s.run(query, params or {}).consume()

        self._retrying(attempt, idempotent=True)

    def run_autocommit(self, query: str, params: dict[str, Any] | None = None) -> None:
        """Kept for older callers: a ``CALL { ... } IN TRANSACTIONS`` statement goes to
        :meth:`run_in_transactions`, anything else runs as a managed write (retried). Prefer those two
        (and :meth:`schema` for constraints and indexes)."""
        if _IN_TRANSACTIONS.search(query):
            self.run_in_transactions(query, params)
        else:
            self.write(query, params)
