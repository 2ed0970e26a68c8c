"""Database engine, sessions and migrations (SQLite WAL embedded default, PostgreSQL supported)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from select import POLLIN, poll
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from bridge.store import readfirst
from bridge.store.writelock import TurnTakingConnection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

READ_ONLY = "sfbridge_read_only"
"""Execution option of the connections of Store.reading() sessions."""

READ_FIRST = "sfbridge_read_first"
"""Execution option of the connections of Store.session(read_first=True) sessions (SQLite):
their transaction begins deferred, as a read (bridge.store.readfirst)."""

FIRST_TURN = "sfbridge_first_turn"
"""Execution option of the connections of Store.session(first_turn=True) sessions."""

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a SQLite writer waits for another's transaction before "database is locked"."""

ANALYSIS_LIMIT = 2000
"""Rows SQLite's ANALYZE samples per index (approximate statistics, bounded cost)."""


class StoredJSON(dict[str, Any]):
    """A JSON object decoded from the text it was stored as, with that text (`text`): written
    into a JSON column it is that text again, not encoded anew (`json_text`; a sales entry's
    `raw` is its event's payload as stored). Read-only by agreement: a change to the dict
    would not be written."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        super().__init__(json.loads(text))
        self.text = text


def json_text(value: Any) -> str:
    """The engines' JSON serializer: the text `json.dumps` gives, except for a `StoredJSON`,
    which is its own text (encoding an event's payload again was a tenth of writing its
    entry)."""
    if type(value) is StoredJSON:
        return value.text
    if not value and type(value) in _EMPTY:
        return _EMPTY[type(value)]  # about half the values a chunk writes (`previous`, …)
    return _encode(value)


_EMPTY: dict[type, str] = {dict: "{}", list: "[]"}


_encode = json.JSONEncoder(check_circular=False).encode
"""`json.dumps` with its defaults, less the check for circular references (values written
are decoded JSON or built from it: a cycle would still fail, as a RecursionError) and the
making of an encoder per call: a fifth of encoding a row's small values."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    kwargs.setdefault("json_serializer", json_text)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("timeout", BUSY_TIMEOUT_SECONDS)
        connect_args.setdefault("factory", TurnTakingConnection)
        busy_timeout = float(connect_args["timeout"])
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy own transactions so BEGIN IMMEDIATE-style locking behaves.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the write lock up front (no deadlock upgrading a read lock), in
            # turn through the lock file (bridge.store.writelock); Store.reading() sessions
            # read in a deferred transaction and never take it, read-first ones take it at
            # their first write (bridge.store.readfirst).
            options = conn.get_execution_options()
            if options.get(READ_ONLY) or options.get(READ_FIRST):
                conn.exec_driver_sql("BEGIN")
                return
            dbapi_conn = conn.connection.dbapi_connection
            if isinstance(dbapi_conn, TurnTakingConnection):
                first = bool(options.get(FIRST_TURN))
                dbapi_conn.begin_write(busy_timeout, first=first)
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkout", _still_connected)
    return engine


def _still_connected(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection the server has closed is replaced at checkout, without
    the round trip a pre-ping costs every session (a trickle's job opens several): an idle
    connection has nothing to read unless the server hung up (a restart, an idle timeout,
    pg_terminate_backend: its last words and the end of the stream are waiting), so a
    readable socket means a new connection. A peer gone without a word is found by the
    first statement, as it would be by a ping."""
    if dbapi_conn.closed or dbapi_conn.broken:
        raise DisconnectionError()
    socket = poll()  # not select(): a process with many orgs may hold descriptors past 1,024
    socket.register(dbapi_conn.fileno(), POLLIN)
    if socket.poll(0):
        raise DisconnectionError()


class Store:
    """One engine and its session factory."""

    def __init__(self, url: str, **engine_kwargs: Any):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        readers = self.engine.execution_options(**{READ_ONLY: True})
        if self.engine.dialect.name == "postgresql":
            # No BEGIN and no ROLLBACK: two round trips less per read, and psycopg keeps its
            # prepared statements (it drops them all on a ROLLBACK; DEALLOCATE ALL follows).
            readers = readers.execution_options(isolation_level="AUTOCOMMIT")
        self._readers = sessionmaker(readers, expire_on_commit=False)
        self._first = sessionmaker(
            self.engine.execution_options(**{FIRST_TURN: True}), expire_on_commit=False
        )
        self._read_first: sessionmaker[Session] | None = None
        if self.engine.dialect.name == "sqlite":
            self._read_first = sessionmaker(
                self.engine.execution_options(**{READ_FIRST: True}), expire_on_commit=False
            )
            readfirst.listen(self._read_first)

    @contextmanager
    def session(self, *, first_turn: bool = False, read_first: bool = False) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error.

        `first_turn`: on SQLite its transaction goes before the other writers waiting for
        theirs (the subscriber storing a delivery: bridge.store.writelock). `read_first`: on
        SQLite it holds no write lock until its first write, and raises `readfirst.Stale`
        there if what it read changed meanwhile (bridge.store.readfirst)."""
        if read_first and self._read_first is not None:
            with self._read_first() as session, session.begin():
                readfirst.start(session)
                yield session
            return
        with (self._first if first_turn else self.sessions)() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only (nothing is committed). On SQLite its transaction is
        deferred: it takes no write lock, so a read that takes milliseconds (the candidate
        pool of a chunk) does not hold up the subscriber or another worker. On PostgreSQL
        each statement is its own transaction (autocommit): the reads need no one snapshot
        (what a chunk changes, it locks and reads again in its write transaction)."""
        with self._readers() as session:
            yield session  # closing ends the transaction; what was read stays loaded

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to `revision`."""
        from alembic import command

        command.upgrade(alembic_config(self.url), revision)
        self.analyze()

    def analyze(self) -> None:
        """Refresh the query planner's statistics (after migrations, bulk imports, and
        periodically from the sweeper).

        SQLite has none unless asked (it then guesses, and picked an index that read a whole
        program for a lookup by Salesforce id); ``analysis_limit`` samples each index, so this
        takes milliseconds at a million referrals and holds the write lock as briefly.
        PostgreSQL's autovacuum keeps its own, but only some time after a bulk load.
        """
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
                conn.exec_driver_sql("ANALYZE")
                conn.exec_driver_sql("PRAGMA optimize")
            else:
                conn.exec_driver_sql("ANALYZE")
            conn.commit()

    def dispose(self) -> None:
        self.engine.dispose()


def reserve_ids(session: Session, model: type[DeclarativeBase], count: int) -> list[int]:
    """`count` new ids of `model`'s table, ascending, for rows this transaction will insert
    with them (so a row can be referred to before it is written, and written once, whole).

    PostgreSQL draws them from the table's sequence. SQLite gives a new row the highest id
    plus one, and a write transaction holds the database's write lock from its start, so the
    ids after the highest are this transaction's (a read-first one checks at its first write
    that they still are); insert the rows before anything else of the table is written in it
    (a row written meanwhile without an id would take one of them).
    """
    if count <= 0:
        return []
    table: Any = model.__table__
    with session.no_autoflush:  # unsaved rows to be given these ids must not be written first
        if session.get_bind().dialect.name == "postgresql":
            drawn = session.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence(:table, 'id'))"
                    " FROM generate_series(1, :n)"
                ),
                {"table": table.name, "n": count},
            )
            return sorted(drawn.scalars())
        highest = session.scalar(select(func.max(table.c.id))) or 0
    readfirst.reserved(session, table, highest)  # read before the write lock: checked then
    return list(range(highest + 1, highest + 1 + count))


def get_or_create_program(
    session: Session, key: str, name: str, org_connection_id: int | None
) -> Any:
    """The program `key`: its row, or a new one made from the config's name on first use."""
    from bridge.store.models import Program

    program = session.scalar(select(Program).where(Program.key == key))
    if program is None:
        program = Program(key=key, name=name, org_connection_id=org_connection_id)
        with session.begin_nested():
            session.add(program)
    return program


_Model = TypeVar("_Model", bound=DeclarativeBase)


def unsaved(model: type[_Model], values: dict[str, Any]) -> _Model:
    """A new `model` object holding `values`, made without the ORM's constructor (which
    sends an attribute event per column: most of the cost of a batch's entry or push). For
    rows written with a Core INSERT (`row_values`) or added to a session: a flush inserts
    what the object holds either way."""
    obj: _Model = model.__mapper__.class_manager.new_instance()
    obj.__dict__.update(values)
    return obj


def row_values(obj: DeclarativeBase) -> dict[str, Any]:
    """An unsaved object's row for a Core insert: every column, with the column's Python-side
    default where the object leaves it None (what the ORM's own INSERT would write); the
    defaults are set on the object too, so it holds what was written."""
    given = vars(obj)  # what was set on it (read past the instrumented attributes)
    out: dict[str, Any] = {}
    for key, default, primary_key in _row_columns(obj.__table__):
        value = given.get(key)
        if value is None and default is not None:
            value = default.arg(None) if default.is_callable else default.arg
            setattr(obj, key, value)
        if value is None and primary_key:
            continue  # the database gives it
        out[key] = value
    return out


@functools.cache
def _row_columns(table: Any) -> tuple[tuple[str, Any, bool], ...]:
    """(key, Python-side default, is the primary key) of each column, read once per table."""
    return tuple((c.key, c.default, c.primary_key) for c in table.columns)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg
