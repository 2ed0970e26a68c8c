"""A column of values as one PostgreSQL array parameter in the binary format, made in C loops.

A delivery's rows go to PostgreSQL as one array per column (`bridge.streaming.inbox`).
psycopg's own list dumper makes a binary array element by element in Python (a call of the
element's dumper, a length packed and two appends each): about half of the subscriber's
client CPU for a delivery's statement, once its payloads are text. `text_array`,
`bigint_array`, `timestamptz_array` and `json_array` make the same bytes with `map`, `zip` and
one `join`, which run in C; a value that is None becomes the array's NULL. The statement
casts each parameter (`%(name)b::text[]`): the server reads it as that type.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from typing import Any

from psycopg import adapters, pq
from psycopg.adapt import Dumper

_TEXT, _INT8, _JSON, _TIMESTAMPTZ = 25, 20, 114, 1184
"""The element types' oids (pg_type)."""

_HEAD = struct.Struct(">iiiii")  # dimensions, has nulls, element type, length, lower bound
_EMPTY = struct.Struct(">iii")
_LENGTH = struct.Struct(">i").pack
_EIGHT_BYTES = struct.Struct(">iq").pack  # an int8 element: its length (8), its value
_NULL = _LENGTH(-1)

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class PgArray:
    """A one-dimensional array in PostgreSQL's binary format, sent as it is."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _PgArrayDumper(Dumper):
    format = pq.Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return bytes(obj.data)


adapters.register_dumper(PgArray, _PgArrayDumper)


def _array(element_oid: int, count: int, has_null: bool, elements: Iterable[bytes]) -> PgArray:
    if not count:
        return PgArray(_EMPTY.pack(0, 0, element_oid))
    return PgArray(_HEAD.pack(1, has_null, element_oid, count, 1) + b"".join(elements))


def _with_nulls(encoded: Iterable[bytes | None]) -> Iterable[bytes]:
    for value in encoded:
        if value is None:
            yield _NULL
        else:
            yield _LENGTH(len(value))
            yield value


def _strings(element_oid: int, values: Sequence[str | None]) -> PgArray:
    if None in values:
        encoded = [None if v is None else v.encode() for v in values]
        return _array(element_oid, len(values), True, _with_nulls(encoded))
    data = list(map(str.encode, values))  # type: ignore[arg-type]  # no None (above)
    return _array(
        element_oid, len(data), False, chain(*zip(map(_LENGTH, map(len, data)), data, strict=True))
    )


def text_array(values: Sequence[str | None]) -> PgArray:
    return _strings(_TEXT, values)


def json_array(values: Sequence[str | None]) -> PgArray:
    """JSON texts (the binary format of `json` is its text)."""
    return _strings(_JSON, values)


def bigint_array(values: Sequence[int | None]) -> PgArray:
    return _eight_bytes(_INT8, values)


def timestamptz_array(values: Sequence[datetime | None]) -> PgArray:
    """Datetimes as microseconds since 2000-01-01 UTC; a naive one is taken as UTC."""
    if None in values:
        return _eight_bytes(_TIMESTAMPTZ, [None if v is None else _micros(v) for v in values])
    try:
        since = map(operator.sub, values, repeat(_PG_EPOCH))
        return _eight_bytes(_TIMESTAMPTZ, list(map(operator.floordiv, since, repeat(_MICROSECOND))))
    except TypeError:  # a naive datetime among them
        return _eight_bytes(_TIMESTAMPTZ, [_micros(v) for v in values])  # type: ignore[arg-type]


def _eight_bytes(element_oid: int, values: Sequence[int | None]) -> PgArray:
    if None in values:
        encoded = [None if v is None else struct.pack(">q", v) for v in values]
        return _array(element_oid, len(values), True, _with_nulls(encoded))
    return _array(element_oid, len(values), False, map(_EIGHT_BYTES, repeat(8), values))


def _micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _PG_EPOCH) // _MICROSECOND
