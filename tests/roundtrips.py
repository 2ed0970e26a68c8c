"""What a block of code sends to PostgreSQL, read from libpq's protocol trace: its round trips
(one per simple query or Sync: the server answers each with ReadyForQuery), the simple
queries (BEGIN, COMMIT, a pre-ping's ';', ROLLBACK, DEALLOCATE ALL), the statements parsed
and the statements executed (an executemany runs its statement once per row)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg import pq
from sqlalchemy import event

from bridge.store import Store


@dataclass
class Trips:
    round_trips: int = 0
    simple: list[str] = field(default_factory=list)  # the simple queries' texts, in order
    parsed: list[str] = field(default_factory=list)  # statements parsed (not prepared before)
    executed: int = 0  # statements the server ran (an Execute each, pipelined or not)

    @property
    def prepares(self) -> int:
        """Statements psycopg prepared (after its threshold of 5 runs): a round trip each."""
        return sum(1 for p in self.parsed if not p.startswith(' ""'))

    @property
    def executions(self) -> int:
        """Round trips that ran something (the preparations left out)."""
        return self.round_trips - self.prepares

    @property
    def commands(self) -> list[str]:
        """The simple queries' first words (BEGIN ISOLATION LEVEL … is a BEGIN)."""
        return [(q.split() or [q])[0] for q in self.simple]


@contextmanager
def traced(store: Store) -> Iterator[Trips]:
    """Trace every connection the block checks out of `store`'s pool (the block must check
    them out: one already checked out is not traced)."""
    trips = Trips()
    traced_conns: list[Any] = []
    with tempfile.TemporaryFile("w+") as out:

        def on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            if dbapi_conn not in traced_conns:
                dbapi_conn.pgconn.trace(out.fileno())
                dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                traced_conns.append(dbapi_conn)

        event.listen(store.engine.pool, "checkout", on_checkout)
        try:
            yield trips
        finally:
            event.remove(store.engine.pool, "checkout", on_checkout)
            for conn in traced_conns:
                if not conn.closed:
                    conn.pgconn.untrace()
        out.seek(0)
        for line in out.read().splitlines():
            fields = line.split("\t")
            if len(fields) < 3:
                continue
            side, kind, args = fields[0], fields[2], fields[3] if len(fields) > 3 else ""
            if side == "B" and kind == "ReadyForQuery":
                trips.round_trips += 1
            elif side == "F" and kind == "Query":
                trips.simple.append(args.strip().strip('"'))
            elif side == "F" and kind == "Parse":
                trips.parsed.append(args)
            elif side == "F" and kind == "Execute":
                trips.executed += 1
