"""Whether a message can be stored as JSON on SQLite and PostgreSQL: finite numbers, text
without NUL and no longer than a Salesforce field, text keys, bounded nesting. A message that
cannot is a poison event: `bridge.streaming.events` stores it as malformed, with the problem
in words and its place (`message.data.sobject.LastName is 131,073 characters long …`).

The check walks every value of every message (two dozen in a PushTopic event), so the walk
tests exact types and names no place; the place of a problem is put together on the way out
of the walk, only when there is one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_INTEGER = 2**63 - 1
"""The largest whole number stored (a BIGINT)."""

MAX_STRING_CHARS = 131_072
"""The longest text a Salesforce field holds (Long Text Area: 131,072 characters)."""

MAX_DEPTH = 12
"""Nesting deeper than this is no Salesforce event (a compound field inside a record is 3)."""


class Unstorable(ValueError):
    """A value that cannot be stored: where it is and why, in words."""


def check(value: Any, where: str) -> None:
    """Raise `Unstorable` unless every value in `value` can be stored; `where` names it."""
    try:
        _walk(value, 0)
    except _Problem as exc:
        raise Unstorable(where + "".join(reversed(exc.path)) + " " + exc.problem) from None


def show(value: Any) -> str:
    """A value in an error message: its type and a short repr (never the whole of it)."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'…' if len(text) > 60 else ''}"


class _Problem(Exception):
    """A value `_walk` refuses: the problem in words, and the keys to it, innermost first
    (each level adds its own on the way out)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path: list[str] = []


def _walk(value: Any, depth: int) -> None:
    kind = type(value)
    if kind is str:
        _storable_text(value)
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise _Problem(f"has a key that is {show(key)}, not text")
            try:
                if depth >= MAX_DEPTH:
                    raise _Problem(f"is nested deeper than {MAX_DEPTH} levels")
                if type(item) in _LEAVES:
                    if type(item) is str and (len(item) > MAX_STRING_CHARS or "\x00" in item):
                        _storable_text(item)  # says which
                else:
                    _walk(item, depth + 1)
            except _Problem as exc:
                exc.path.append(f".{key[:40]}")
                raise
    elif kind is list:
        for i, item in enumerate(value):
            try:
                if depth >= MAX_DEPTH:
                    raise _Problem(f"is nested deeper than {MAX_DEPTH} levels")
                _walk(item, depth + 1)
            except _Problem as exc:
                exc.path.append(f"[{i}]")
                raise
    elif kind is int:
        if abs(value) > MAX_INTEGER:
            raise _Problem(f"is a number too large to store ({show(value)})")
    elif kind is not bool and value is not None:
        _storable_other(value, depth)


_LEAVES = frozenset({str, bool, type(None)})
"""Values checked without a call of `_storable` (most of a record's)."""


def _storable_text(value: str) -> None:
    if len(value) > MAX_STRING_CHARS:
        raise _Problem(
            f"is {len(value):,} characters long (a Salesforce field holds at most "
            f"{MAX_STRING_CHARS:,})"
        )
    if "\x00" in value:
        raise _Problem("contains a NUL character")


def _storable_other(value: Any, depth: int) -> None:
    """Numbers, and the subclasses of text, mappings and lists (JSON brings none of them)."""
    if isinstance(value, str):
        _storable_text(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Problem(f"is {value}, not a finite number")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if abs(value) > MAX_INTEGER:
            raise _Problem(f"is a number too large to store ({show(value)})")
    elif isinstance(value, Mapping):
        _walk(dict(value), depth)
    elif isinstance(value, list):
        _walk(list(value), depth)
    else:
        raise _Problem(f"is {show(value)}, not a JSON value")
