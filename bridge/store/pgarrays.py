"""A column of values as one PostgreSQL array parameter in the binary format, made in C loops.

A delivery's rows go to PostgreSQL as one array per column (`bridge.streaming.inbox`).
psycopg's own list dumper makes a binary array element by element in Python (a call of the
element's dumper, a length packed and two appends each): about half of the subscriber's
client CPU for a delivery's statement, once its payloads are text. `text_array`,
`bigint_array`, `timestamptz_array` and `json_array` make the same bytes with `map`, `zip` and
one `join`, which run in C; a value that is None becomes the array's NULL. The statement
casts each parameter (`%(name)b::text[]`): the server reads it as that type, and the array's
element type must be that type's (`varchar_array` for a ``VARCHAR(n)[]``). `boolean_array`,
`integer_array` and `double_array` serve the other columns `bridge.store.arrays` writes.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from typing import Any

from psycopg import adapters, pq
from psycopg.adapt import Dumper

_BOOL, _INT8, _INT4, _TEXT, _JSON = 16, 20, 23, 25, 114
_FLOAT8, _VARCHAR, _TIMESTAMPTZ = 701, 1043, 1184
"""The element types' oids (pg_type)."""

_HEAD = struct.Struct(">iiiii")  # dimensions, has nulls, element type, length, lower bound
_EMPTY = struct.Struct(">iii")
_LENGTH = struct.Struct(">i").pack
_EIGHT_BYTES = struct.Struct(">iq").pack  # an int8 element: its length (8), its value
_FOUR_BYTES = struct.Struct(">ii").pack  # an int4 element: its length (4), its value
_DOUBLE = struct.Struct(">id").pack  # a float8 element: its length (8), its value
_BOOLEANS = {False: b"\x00\x00\x00\x01\x00", True: b"\x00\x00\x00\x01\x01"}
_NULL = _LENGTH(-1)

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class PgArray:
    """A one-dimensional array in PostgreSQL's binary format, sent as it is."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        """Its number of elements (the header's length; an empty array has no length)."""
        return int.from_bytes(self.data[12:16], signed=True) if len(self.data) > 12 else 0


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


def varchar_array(values: Sequence[str | None]) -> PgArray:
    return _strings(_VARCHAR, values)


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


def integer_array(values: Sequence[int | None]) -> PgArray:
    return _packed(_INT4, _FOUR_BYTES, 4, values)


def double_array(values: Sequence[float | None]) -> PgArray:
    return _packed(_FLOAT8, _DOUBLE, 8, values)


def boolean_array(values: Sequence[bool | None]) -> PgArray:
    has_null = None in values
    elements: Iterable[bytes] = map(_BOOLEANS.get, values, repeat(_NULL))  # type: ignore[arg-type]
    return _array(_BOOL, len(values), has_null, elements)


def _packed(
    element_oid: int,
    pack: Callable[[int, Any], bytes],
    length: int,
    values: Sequence[int | float | None],
) -> PgArray:
    """Fixed-length elements, each packed with its length by `pack`."""
    if None in values:
        elements = [_NULL if v is None else pack(length, v) for v in values]
        return _array(element_oid, len(values), True, elements)
    return _array(element_oid, len(values), False, map(pack, repeat(length), values))


def _eight_bytes(element_oid: int, values: Sequence[int | None]) -> PgArray:
    return _packed(element_oid, _EIGHT_BYTES, 8, values)


def _micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _PG_EPOCH) // _MICROSECOND
