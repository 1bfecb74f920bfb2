"""One place that talks to Neo4j: a driver, the session database, retries, clear errors.

Every query string passed here is fixed text from this codebase or ``queries/``;
values always travel as parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import neo4j
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError, ServiceUnavailable

from .errors import ConnectionFailed
from .settings import Neo4jSettings

T = TypeVar("T")


class Neo4jClient:
    """A thin wrapper over the official driver.

    ``read``/``write`` run one parameterised statement in a managed transaction
    (retried by the driver on transient errors) and return plain dicts;
    ``write_tx`` runs a function of several statements in one explicit transaction.
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
        driver_kwargs.setdefault("connection_timeout", 10.0)
        driver_kwargs.setdefault("max_transaction_retry_time", 30.0)
        # Notifications (e.g. "relationship type does not exist yet" on an empty graph) are not errors.
        driver_kwargs.setdefault("notifications_min_severity", "OFF")
        self._driver = GraphDatabase.driver(s.uri, auth=auth, **driver_kwargs)
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
            raise ConnectionFailed(f"no Neo4j answers at {s.uri} ({e}); {hint}") from None

    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> "Neo4jClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session(self, **kw: Any) -> neo4j.Session:
        return self._driver.session(database=self.database, **kw)

    @property
    def driver(self) -> neo4j.Driver:
        return self._driver

    def read(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.session(default_access_mode=neo4j.READ_ACCESS) as s:
            return s.execute_read(lambda tx: [r.data() for r in tx.run(query, params or {})])

    def stream(self, query: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Records one at a time, for results too large to hold (snapshot export)."""
        with self.session(default_access_mode=neo4j.READ_ACCESS) as s:
            for r in s.run(query, params or {}):
                yield r.data()

    def write(self, query: str, params: dict[str, Any] | None = None) -> neo4j.SummaryCounters:
        def work(tx: neo4j.ManagedTransaction) -> neo4j.SummaryCounters:
            return tx.run(query, params or {}).consume().counters

        with self.session() as s:
            return s.execute_write(work)

    def write_tx(self, fn: Callable[[neo4j.ManagedTransaction], T]) -> T:
        """Run ``fn(tx)`` in one write transaction: all of it commits or none of it does."""
        with self.session() as s:
            return s.execute_write(fn)

    def run_autocommit(self, query: str, params: dict[str, Any] | None = None) -> None:
        """One auto-commit statement (schema changes, the naive baseline in bench/)."""
        with self.session() as s:
            s.run(query, params or {}).consume()
