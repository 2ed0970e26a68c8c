"""SQLite writers take turns through the lock file: the next one starts as soon as the last
committed, instead of after SQLite's busy handler has slept up to 100 ms at a time."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from sqlalchemy import text

from bridge.store import Store
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
