"""Many rows in one statement: on PostgreSQL one array per column, elsewhere an executemany.

A chunk of the worker writes its entries, audit rows, pushes and referral changes many rows
at a time. psycopg runs an executemany as one execution of the statement per row (a Bind
and an Execute each, pipelined), so the server ran the INSERT, its foreign-key checks and
its executor start-up once per row (~0.1 ms of the server's CPU an entry), and a multi-row
``VALUES`` (what SQLAlchemy makes of an ``INSERT … RETURNING`` of many rows) is a new text
for every number of rows, longer than psycopg caches: it parsed it with regular
expressions every time, and the server planned it every time. Here the rows go as one
binary array per column (``unnest``): one execution, and a text that depends on the columns
only, so psycopg converts it once and the server prepares and plans it once (the
subscriber's delivery is written the same way, ``bridge.streaming.inbox``).

Each value goes through its column's type for the dialect, as SQLAlchemy would bind it (a
JSON column's value serialized, a datetime made UTC); the column's array is then made by
`bridge.store.pgarrays` for the types it builds (`_BUILDERS`), by psycopg's list dumper for
any other (a JSON column's values, psycopg's own JSON wrappers). The rows must give every
column to be written, each row the same ones (``bridge.store.row_values`` gives them);
anything else takes SQLAlchemy's own path, which writes the same rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, any_, bindparam, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from bridge.store import pgarrays

_Columns = tuple[str, ...]


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    skip_conflicts_on: str | None = None,
    returning: str | None = None,
) -> list[Any]:
    """Insert `rows` into `table` in one statement (on PostgreSQL). `skip_conflicts_on`: a
    row whose value of that unique column is taken inserts nothing (``ON CONFLICT (…) DO
    NOTHING``). Returns the `returning` column of the rows inserted (empty without it)."""
    if not rows:
        return []
    connection = session.connection()
    columns = tuple(rows[0])
    dialect = connection.dialect
    if dialect.name != "postgresql" or not _same_columns(table, columns, rows):
        statement = _insert(table, dialect.name, skip_conflicts_on, returning)
        result = session.execute(statement, rows)
        return list(result.scalars()) if returning is not None else []
    text = _insert_text(table, columns, skip_conflicts_on, returning)
    result = connection.exec_driver_sql(text, _arrays(table, columns, rows, dialect))
    return list(result.scalars()) if returning is not None else []


def update_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Update rows of `table` by id: each of `rows` gives the ``id`` and the new values of
    its columns, all rows the same columns. One statement on PostgreSQL."""
    if not rows:
        return
    connection = session.connection()
    columns = tuple(rows[0])
    if connection.dialect.name != "postgresql" or not _same_columns(
        table, columns, rows, updating=True
    ):
        changed = tuple(c for c in columns if c != "id")
        by_id = [{_ID: row["id"], **{c: row[c] for c in changed}} for row in rows]
        session.execute(_update_by_id(table, changed), by_id)
        return
    text = _update_text(table, columns)
    connection.exec_driver_sql(text, _arrays(table, columns, rows, connection.dialect))


def among(column: Any, name: str, dialect: str) -> Any:
    """``column`` is one of the values bound as `name` (a list). On PostgreSQL one array
    (``= ANY``): the statement's text is then the same whatever the number of values, so
    psycopg converts it once and the server plans it once, where an expanding ``IN`` binds
    each value apart (a new text for every count, and past 50 values one psycopg parses with
    regular expressions every time). Elsewhere an expanding ``IN``."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def _same_columns(
    table: Table, columns: _Columns, rows: Sequence[dict[str, Any]], *, updating: bool = False
) -> bool:
    """Whether every row gives these columns of the table and only these (else SQLAlchemy's
    own statement, which fills in the defaults of the columns left out, writes them)."""
    if not _complete(table, columns, updating):
        return False
    keys = rows[0].keys()
    return all(row.keys() == keys for row in rows)


@functools.lru_cache(maxsize=256)
def _complete(table: Table, columns: _Columns, updating: bool) -> bool:
    """Every name is a column of the table, and no column left out has a Python-side default
    SQLAlchemy would write (``default`` on insert, ``onupdate`` on update): the database's own
    default, or NULL, is then what SQLAlchemy would write too."""
    given = set(columns)
    if not given <= set(table.c.keys()):
        return False
    for column in table.columns:
        default = column.onupdate if updating else column.default
        if column.key not in given and default is not None and not column.primary_key:
            return False
    return True


def _arrays(
    table: Table, columns: _Columns, rows: Sequence[dict[str, Any]], dialect: Dialect
) -> dict[str, Any]:
    """One array per column, each value bound as its column's type binds it."""
    out: dict[str, Any] = {}
    for name, bind in zip(columns, _binders(table, columns, dialect), strict=True):
        values = [row[name] for row in rows]
        if bind is not None:
            values = [bind(v) for v in values]
        build = _BUILDERS.get(_element_type(table, name))
        out[name] = values if build is None else build(values)
    return out


_BUILDERS: dict[str, Callable[[list[Any]], pgarrays.PgArray]] = {
    "VARCHAR": pgarrays.varchar_array,
    "TEXT": pgarrays.text_array,
    "BIGINT": pgarrays.bigint_array,
    "INTEGER": pgarrays.integer_array,
    "BOOLEAN": pgarrays.boolean_array,
    "FLOAT": pgarrays.double_array,
    "TIMESTAMP WITH TIME ZONE": pgarrays.timestamptz_array,
}
"""The element types, as PostgreSQL's dialect names them without a length, whose array
`pgarrays` builds; a column of another type is sent as a list, made by psycopg's dumper."""


@functools.lru_cache(maxsize=256)
def _binders(
    table: Table, columns: _Columns, dialect: Dialect
) -> tuple[Callable[[Any], Any] | None, ...]:
    return tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    )


@functools.lru_cache(maxsize=256)
def _element_type(table: Table, name: str) -> str:
    return table.c[name].type.compile(dialect=postgresql.dialect()).split("(")[0]


def _array_type(table: Table, name: str) -> str:
    return f"{table.c[name].type.compile(dialect=postgresql.dialect())}[]"


@functools.lru_cache(maxsize=256)
def _insert(
    table: Table, dialect: str, skip_conflicts_on: str | None, returning: str | None
) -> Any:
    """SQLAlchemy's statement for an executemany of `insert_rows`, built once."""
    statement: Any = insert(table)
    if skip_conflicts_on is not None:
        # Only that column's conflict is absorbed: a row whose id is taken is an error.
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = dialect_insert(table).on_conflict_do_nothing(
            index_elements=[table.c[skip_conflicts_on]]
        )
    return statement.returning(table.c[returning]) if returning is not None else statement


@functools.lru_cache(maxsize=256)
def _insert_text(
    table: Table, columns: _Columns, skip_conflicts_on: str | None, returning: str | None
) -> str:
    arrays = ", ".join(f"%({name})b::{_array_type(table, name)}" for name in columns)
    text = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"  # noqa: S608 - names of the model's columns
    if skip_conflicts_on is not None:
        text += f" ON CONFLICT ({skip_conflicts_on}) DO NOTHING"
    if returning is not None:
        text += f" RETURNING {returning}"
    return text


@functools.lru_cache(maxsize=256)
def _update_text(table: Table, columns: _Columns) -> str:
    arrays = ", ".join(f"%({name})b::{_array_type(table, name)}" for name in columns)
    changed = ", ".join(f"{name} = given.{name}" for name in columns if name != "id")
    return (
        f"UPDATE {table.name} SET {changed} FROM unnest({arrays})"  # noqa: S608 - names of the model's columns
        f" AS given ({', '.join(columns)}) WHERE {table.name}.id = given.id"
    )


_ID = "row_id"
"""The id's parameter in the executemany form (SQLAlchemy keeps a column's own name for the
SET clause)."""


@functools.lru_cache(maxsize=256)
def _update_by_id(table: Table, columns: _Columns) -> Any:
    """The executemany form of `update_rows`: the id bound as ``row_id``, the columns as
    their names."""
    return (
        update(table)
        .where(table.c.id == bindparam(_ID))
        .values({name: bindparam(name) for name in columns})
    )
