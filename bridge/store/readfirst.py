"""Write transactions that read first (SQLite): a chunk's reads and decisions run before its
transaction takes the write lock, and only its writes after.

SQLite lets one writer in at a time, so whatever a write transaction does while it holds the
lock, every other writer (the subscriber storing its next delivery) waits for. A session from
`Store.session(read_first=True)` begins its transaction deferred, as a read (no write lock:
other writers go on meanwhile), and turns it into a write transaction at its first write (a
flush with something to write, or any statement but a SELECT it executes): the read ends,
the writer takes its turn (bridge.store.writelock) and `BEGIN IMMEDIATE` begins the write
transaction on the same connection, the session's objects kept as they are.

What was read may have changed between the read and the first write; before that write runs,
one statement checks what the session relied on: that each object it loaded with an
`updated_at` (the referrals a chunk changes or syncs into, the org connection) is unchanged,
and that the ids `reserve_ids` gave while reading are still the next ones of their tables
(nothing was written there meanwhile: no other entry, so no entry's previous values moved
either). If one fails, `Stale` is raised, and the caller rolls back and does the work again
in an ordinary write transaction, which holds the lock from its start. A savepoint open at
the first write raises `Stale` too (ending the read would end it).

On PostgreSQL a read-first session is an ordinary one: a reader never holds up a writer
there, and what a write depends on is locked as it is read (`FOR UPDATE`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, event, func, literal, select, tuple_, union_all
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

_PHASE = "sfbridge_read_first"
"""Session.info key of the read phase (present until the first write)."""


class Stale(Exception):
    """What a read-first transaction read changed before its first write: do it again."""


@dataclass
class _ReadPhase:
    reserved: dict[Any, int] = field(default_factory=dict)  # table -> highest id when read


def listen(sessions: sessionmaker[Session]) -> None:
    """Make the first write of the read-first sessions `sessions` makes begin their write
    transaction (their connections begin deferred: `READ_FIRST`)."""
    event.listen(sessions, "do_orm_execute", _on_execute)
    event.listen(sessions, "before_flush", _before_flush)


def start(session: Session) -> None:
    """The session reads until its first write."""
    session.info[_PHASE] = _ReadPhase()


def reserved(session: Session, table: Any, highest: int) -> None:
    """`reserve_ids` read `highest` as the table's highest id while reading: checked at the
    first write."""
    phase: _ReadPhase | None = session.info.get(_PHASE)
    if phase is not None:
        phase.reserved.setdefault(table, highest)


def _on_execute(state: ORMExecuteState) -> None:
    if not state.is_select and _PHASE in state.session.info:
        write_from_here(state.session)


def _before_flush(session: Session, *_args: Any) -> None:
    if _PHASE in session.info and (session.new or session.dirty or session.deleted):
        write_from_here(session)


def write_from_here(session: Session) -> None:
    """End the session's read and begin its write transaction (in turn), then check that what
    it read still holds (`Stale` if not). Nothing to do once it writes."""
    phase: _ReadPhase | None = session.info.pop(_PHASE, None)
    if phase is None:
        return
    if session.in_nested_transaction():
        raise Stale("a savepoint was open at the first write")
    dbapi = session.connection().connection.dbapi_connection
    begin_write = getattr(dbapi, "begin_write_after_read", None)
    if begin_write is not None:
        begin_write()
    else:  # a connection that takes no turns
        assert dbapi is not None
        dbapi.commit()
        dbapi.execute("BEGIN IMMEDIATE")
    with session.no_autoflush:  # what the session holds is written after the checks
        _check_reads(session, phase)


def _check_reads(session: Session, phase: _ReadPhase) -> None:
    loaded = _loaded(session)
    tables = tuple(sorted(phase.reserved, key=lambda t: t.name))
    if loaded or tables:
        classes = tuple(sorted(loaded, key=lambda c: c.__name__))
        params: dict[str, Any] = {}
        for cls in classes:  # by id (the primary key's index), then as loaded
            params[f"ids_{cls.__name__}"] = [i for i, _at in loaded[cls]]
            params[f"loaded_{cls.__name__}"] = loaded[cls]
        found = {name: value for name, value in session.execute(_check(classes, tables), params)}
        for cls in classes:
            if found.get(cls.__name__) != len(loaded[cls]):
                raise Stale(f"a {cls.__name__} read changed before the first write")
        for table in tables:
            if (found.get(table.name) or 0) != phase.reserved[table]:
                raise Stale(f"{table.name} was written to before the first write")


def _loaded(session: Session) -> dict[type, list[tuple[Any, Any]]]:
    """(id, updated_at as loaded) of each object the session loaded, by class (those with an
    `updated_at`: every change of a row of theirs moves it)."""
    out: dict[type, list[tuple[Any, Any]]] = {}
    for state in session.identity_map.all_states():
        values = state.dict
        if "updated_at" in values and "id" in values:
            # As loaded: a change the session is about to write (a new `updated_at` among
            # them) keeps the loaded value beside it.
            loaded_at = state.committed_state.get("updated_at", values["updated_at"])
            out.setdefault(state.class_, []).append((values["id"], loaded_at))
    return out


@functools.lru_cache(maxsize=32)
def _check(classes: tuple[type, ...], tables: tuple[Any, ...]) -> Any:
    """One statement: (name, count) of each class's objects still as loaded (bound as
    `ids_<class>`, and `loaded_<class>`: (id, updated_at) pairs), and (name, highest id) of
    each table. Built once per set of classes and tables."""
    arms = []
    for cls in classes:
        loaded: Any = bindparam(f"loaded_{cls.__name__}", expanding=True)
        ids: Any = bindparam(f"ids_{cls.__name__}", expanding=True)
        pairs = tuple_(cls.id, cls.updated_at)  # type: ignore[attr-defined]
        arms.append(
            select(literal(cls.__name__), func.count())
            .select_from(cls)
            .where(cls.id.in_(ids), pairs.in_(loaded))  # type: ignore[attr-defined]
        )
    for table in tables:
        arms.append(select(literal(table.name), func.max(table.c.id)))
    return union_all(*arms) if len(arms) > 1 else arms[0]
