"""The writers of one SQLite store take turns through a lock file (`<database>-writer`).

SQLite lets one writer in at a time; the others, told "busy", sleep in growing steps (1, 2,
5 … 25, 50, then 100 ms at a time) before they try again, so a writer that arrives while a
worker's chunk is being saved waits tens of milliseconds after the lock was freed, and under
steady contention keeps losing it (scripts/bench_writelock measures it).
Here each write transaction first takes an exclusive `flock` on the lock file, asked again
every millisecond or two (`POLL_SECONDS`), and gives it back when the transaction
ends, so the next writer starts as soon as the last one committed.

Only the store's own connections take it; anything else writing the file (the `sqlite3`
shell) still meets SQLite's busy timeout, which stays in place. A writer that waited the
whole busy timeout goes on without the lock file and meets SQLite's own lock, which fails
as before ("database is locked"). A thread that already holds the lock through another
connection does not wait for itself, and a lock file that cannot be opened is done without;
in both cases SQLite's busy timeout decides, as before.

**The stream's turn first.** A writer that must not wait (the subscriber: Salesforce's
events are acknowledged only once stored) asks with `first=True`: while it waits it holds a
shared lock on a second file, `<database>-writer-first`, and every other writer checks that
file before and after it takes its turn and lets it go first. So a subscriber waits at most
for the one transaction in progress when it asked, never also for the worker's next ones
(claim, chunk, finish, pushes…) that would otherwise win the race for the lock file between
two of its polls. A writer defers for `DEFER_SECONDS` at most, then takes its turn among
them; its wait counts against its timeout.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from typing import Any, cast

POLL_SECONDS = (0.0001, 0.002)
"""A waiting writer asks for the lock file again after the first, then twice as long each
time up to the second: it starts within 2 ms of its turn, at little CPU while it waits."""

FIRST_POLL_SECONDS = (0.0001, 0.0005)
"""The same for a writer that goes first (it waits rarely, and for one transaction only)."""

DEFER_SECONDS = 0.1
"""How long a writer lets those that go first go before it; then it takes its turn among
them (the many org streams of a fleet process, storing one after the other, must not keep
a worker out)."""

_held = threading.local()
"""The lock files this thread holds (through any of its connections)."""


def _held_here() -> set[str]:
    paths: set[str] | None = getattr(_held, "paths", None)
    if paths is None:
        paths = _held.paths = set()
    return paths


def lock_path(database: str) -> str | None:
    """The lock file of a database file; None for an in-memory database or a URI."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-writer"


def first_path(lock: str) -> str:
    """The file where writers that go first say they are waiting, beside the lock file."""
    return f"{lock}-first"


def _open_lock_file(path: str) -> int | None:
    """The lock file's descriptor (flock needs no write access), or None if it cannot be
    opened or created beside the database."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(path, flags | os.O_CLOEXEC, 0o644)
        except OSError:
            continue
    return None


class TurnTakingConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions take turns through the lock file
    (`begin_write()` before `BEGIN IMMEDIATE`; `commit`, `rollback` and `close` give it
    back)."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self.lock_path = lock_path(os.fspath(database))
        self.busy_timeout = float(kwargs.get("timeout", args[0] if args else 5.0))
        self._fd: int | None = None
        self._first_fd: int | None = None
        self._holding = False
        self.waited_seconds = 0.0
        """Time spent waiting for the lock file (all transactions of this connection)."""

    def begin_write(self, timeout: float, *, first: bool = False) -> None:
        """Wait for this database's lock file (at most `timeout` seconds) and hold it.

        `first`: go before every writer that does not (they wait while this one does)."""
        path = self.lock_path
        if path is None or self._holding or path in _held_here():
            return
        if self._fd is None:
            self._fd = _open_lock_file(path)
            self._first_fd = _open_lock_file(first_path(path))
            if self._fd is None:
                self.lock_path = None  # e.g. another user's store: SQLite's lock alone
                if self._first_fd is not None:
                    os.close(self._first_fd)
                    self._first_fd = None
                return
        started = time.monotonic()
        waiting_first = first and self._first_fd is not None
        if waiting_first:
            # Shared: several writers may go first together; held only for an instant by
            # a writer that looks (below), so this never waits long.
            fcntl.flock(cast(int, self._first_fd), fcntl.LOCK_SH)
        pause, longest = FIRST_POLL_SECONDS if first else POLL_SECONDS
        try:
            while True:
                waited = time.monotonic() - started
                defer = not waiting_first and waited < DEFER_SECONDS
                if not (defer and self._someone_goes_first()) and self._take_turn():
                    if not (defer and self._someone_goes_first()):
                        break
                    fcntl.flock(self._fd, fcntl.LOCK_UN)  # one came meanwhile: after it
                if waited >= timeout:
                    return  # go on without it: SQLite's own lock decides
                time.sleep(pause)
                pause = min(pause * 2, longest)
        finally:
            if waiting_first:
                fcntl.flock(cast(int, self._first_fd), fcntl.LOCK_UN)
        self.waited_seconds += time.monotonic() - started
        self._holding = True
        _held_here().add(path)

    def begin_write_after_read(self) -> None:
        """End the read transaction in progress and begin a write transaction in its place,
        in turn (bridge.store.readfirst)."""
        self.commit()
        self.begin_write(self.busy_timeout)
        self.execute("BEGIN IMMEDIATE")

    def _take_turn(self) -> bool:
        try:
            fcntl.flock(cast(int, self._fd), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _someone_goes_first(self) -> bool:
        """Whether a writer that goes first is waiting (it holds the first file shared)."""
        if self._first_fd is None:
            return False
        try:
            fcntl.flock(self._first_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._first_fd, fcntl.LOCK_UN)
        return False

    def end_write(self) -> None:
        if self._holding and self._fd is not None:
            self._holding = False
            _held_here().discard(str(self.lock_path))
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            # Let a thread of this process that waits for the lock file run now, while it is
            # free: a waiter only runs when it holds the GIL, which a busy writer gives up
            # mostly inside its next transaction, so without this the waiter keeps finding
            # the lock taken (a claim's heartbeat starved behind a loop of claims).
            time.sleep(0)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_write()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_write()

    def close(self) -> None:
        try:
            self.end_write()
            for fd in (self._fd, self._first_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._first_fd = None
        finally:
            super().close()
