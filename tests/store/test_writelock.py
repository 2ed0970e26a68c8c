"""SQLite writers take turns through the lock file: the next one starts as soon as the last
committed, instead of after SQLite's busy handler has slept up to 100 ms at a time."""

from __future__ import annotations

import fcntl
import os
import statistics
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.store import Store, writelock
from bridge.store.writelock import TurnTakingConnection, lock_path


def _hold_then_commit(store: Store, hold: float, committed: list[float], began: threading.Event):
    with store.engine.begin() as conn:
        conn.execute(text(f"PRAGMA user_version = {int(hold * 1000)}"))  # a write
        began.set()
        time.sleep(hold)
    committed.append(time.monotonic())


def test_a_waiting_writer_starts_as_soon_as_the_last_one_committed(sqlite_store: Store) -> None:
    other = Store(sqlite_store.url)  # a second engine: its own connections, like a process
    gaps = []
    try:
        for n in range(5):
            committed: list[float] = []
            began = threading.Event()
            holder = threading.Thread(
                target=_hold_then_commit, args=(sqlite_store, 0.3 + n / 1000, committed, began)
            )
            holder.start()
            began.wait(5)
            time.sleep(0.05)  # wait behind it long enough for SQLite's sleeps to reach 25+ ms
            with other.engine.begin() as conn:
                started = time.monotonic()
                conn.execute(text("SELECT 1"))
            holder.join()
            gaps.append(started - committed[0])
    finally:
        other.dispose()
    # SQLite's busy handler alone starts it 0-100 ms late (78 ms for these timings).
    assert statistics.median(gaps) < 0.02, gaps


def test_rollback_and_close_give_the_lock_back(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    first = TurnTakingConnection(path, isolation_level=None, check_same_thread=False)
    second = TurnTakingConnection(path, isolation_level=None, check_same_thread=False)
    try:
        waited: list[float] = []

        def write_second() -> None:
            started = time.monotonic()
            second.begin_write(5)
            waited.append(time.monotonic() - started)
            second.rollback()

        for release in (first.rollback, first.commit):
            first.begin_write(5)
            first.execute("BEGIN IMMEDIATE")
            writer = threading.Thread(target=write_second)
            writer.start()
            time.sleep(0.1)
            release()
            writer.join(5)
            assert 0.08 < waited.pop() < 1
        first.begin_write(5)
        first.close()
        started = time.monotonic()
        second.begin_write(5)
        assert time.monotonic() - started < 0.5
    finally:
        second.close()


def test_a_thread_never_waits_for_itself_and_a_long_wait_gives_up(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    first = TurnTakingConnection(path, isolation_level=None, check_same_thread=False)
    second = TurnTakingConnection(path, isolation_level=None, check_same_thread=False)
    try:
        first.begin_write(5)
        started = time.monotonic()
        second.begin_write(5)  # same thread: SQLite's busy timeout decides, as before
        assert time.monotonic() - started < 0.5

        gave_up: list[float] = []

        def elsewhere() -> None:
            started = time.monotonic()
            second.begin_write(0.1)
            gave_up.append(time.monotonic() - started)

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(5)
        assert 0.1 <= gave_up[0] < 1
    finally:
        first.close()
        second.close()


def test_in_memory_databases_and_uris_have_no_lock_file() -> None:
    assert lock_path(":memory:") is None
    assert lock_path("file:x.db?mode=ro") is None
    assert lock_path("/srv/bridge.db") == "/srv/bridge.db-writer"


def test_a_lock_file_that_cannot_be_opened_is_done_without(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    conn = TurnTakingConnection(path, isolation_level=None)
    try:
        conn.lock_path = str(tmp_path / "missing" / "x.db-writer")  # cannot be created
        conn.begin_write(5)
        conn.execute("BEGIN IMMEDIATE")
        conn.commit()
        assert conn.lock_path is None
    finally:
        conn.close()


class _Waiters:
    """Which threads have found the lock file taken (a waiting writer sleeps between tries)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: set[str] = set()
        self.changed = threading.Condition()
        real_sleep = time.sleep

        def sleep(seconds: float) -> None:
            if seconds:
                with self.changed:
                    self.names.add(threading.current_thread().name)
                    self.changed.notify_all()
            real_sleep(seconds)

        monkeypatch.setattr(writelock.time, "sleep", sleep)

    def wait_for(self, name: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: name in self.names, 10), self.names


def test_the_stream_goes_before_the_writers_waiting_for_their_turn(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's transaction in progress; another worker waits for its turn; the subscriber
    (first_turn) asks; a third worker asks after it. The subscriber gets the next turn."""
    monkeypatch.setattr(writelock, "DEFER_SECONDS", 3600.0)  # however slow this machine is
    waiters = _Waiters(monkeypatch)
    turns: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def write(name: str, first_turn: bool = False) -> None:
        with sqlite_store.session(first_turn=first_turn) as session:
            session.execute(text("PRAGMA user_version = 1"))
            turns.append(name)
            if name == "holder":
                holding.set()
                release.wait(10)

    def start(name: str, first_turn: bool = False) -> threading.Thread:
        thread = threading.Thread(target=write, args=(name, first_turn), name=name)
        thread.start()
        return thread

    threads = [start("holder")]
    assert holding.wait(10)
    for name, first_turn in (("earlier worker", False), ("stream", True), ("later worker", False)):
        threads.append(start(name, first_turn))
        waiters.wait_for(name)
    release.set()
    for thread in threads:
        thread.join(10)
    assert turns[:2] == ["holder", "stream"]
    assert sorted(turns[2:]) == ["earlier worker", "later worker"]


def test_without_the_stream_waiting_nobody_defers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first file held by no one: an ordinary writer takes a free lock at once, and one
    that goes first gives the marker back whether it waited or not."""
    path = str(tmp_path / "x.db")
    worker = TurnTakingConnection(path, isolation_level=None, check_same_thread=False)
    stream = TurnTakingConnection(path, isolation_level=None, check_same_thread=False)
    try:
        waiters = _Waiters(monkeypatch)
        stream.begin_write(5, first=True)
        stream.rollback()
        worker.begin_write(5)
        assert threading.current_thread().name not in waiters.names  # never waited
        worker.rollback()
        assert not worker._someone_goes_first()
    finally:
        worker.close()
        stream.close()


def test_a_writer_defers_for_a_while_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers that go first waiting all the time (a fleet's org streams) do not keep a
    worker out: after DEFER_SECONDS it takes the free lock among them."""
    path = str(tmp_path / "x.db")
    worker = TurnTakingConnection(path, isolation_level=None, check_same_thread=False)
    waiting = os.open(writelock.first_path(f"{path}-writer"), os.O_RDWR | os.O_CREAT)
    try:
        waiters = _Waiters(monkeypatch)
        fcntl.flock(waiting, fcntl.LOCK_SH)  # a writer that goes first, waiting for ever
        worker.begin_write(30)
        assert threading.current_thread().name in waiters.names  # it deferred first
        assert worker._holding  # then took the lock file (not given up after the timeout)
        worker.execute("BEGIN IMMEDIATE")
        worker.rollback()
    finally:
        os.close(waiting)
        worker.close()
