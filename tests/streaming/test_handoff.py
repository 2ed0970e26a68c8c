"""A stream process serving many orgs hands their stored events to the workers together."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from bridge import defaults
from bridge.streaming.fleet import Handoff
from tests.harness import wait_until


def test_events_of_many_orgs_make_one_job_while_the_workers_are_busy() -> None:
    sent: list[list[int]] = []
    handoff = Handoff(sent.append, waiting=lambda: 1)
    for org in range(200):  # one change in each of 200 orgs
        handoff.add([org])
    assert sent == []
    handoff.flush()
    assert sent == [list(range(200))]
    handoff.flush()
    assert len(sent) == 1  # nothing more to send


def test_an_idle_queue_gets_the_events_from_the_thread_that_stored_them() -> None:
    # No hand-off thread running at all: nothing to wake, one LLEN and the send.
    sent: list[tuple[int, list[int]]] = []
    asked: list[int] = []
    handoff = Handoff(
        lambda ids: sent.append((threading.get_ident(), ids)),
        waiting=lambda: asked.append(1) or 0,
    )
    handoff.add([1, 2])
    handoff.add([3])
    assert sent == [(threading.get_ident(), [1, 2]), (threading.get_ident(), [3])]
    assert len(asked) == 2


def test_a_failed_send_does_not_reach_the_org_stream(caplog: pytest.LogCaptureFixture) -> None:
    def down(ids: list[int]) -> None:
        raise redis.ConnectionError("down")

    handoff = Handoff(down)
    handoff.add([5])  # stored already: the sweeper enqueues it
    assert "handing events to the workers failed" in caplog.text
    assert handoff._ids == []


def test_held_events_are_not_sent_by_the_next_org_stream() -> None:
    sent: list[list[int]] = []
    queued = [1]
    handoff = Handoff(sent.append, waiting=lambda: queued[0])
    handoff.add([1])  # held: a job waits
    queued[0] = 0
    handoff.add([2])  # joins the held ones; the hand-off's thread sends them together
    assert sent == []
    stop = threading.Event()
    thread = _running(handoff, stop)
    try:
        wait_until(lambda: sent, 5, "the held events")
        assert sent == [[1, 2]]
    finally:
        stop.set()
        thread.join(5)


def test_a_full_batch_goes_at_once_and_the_rest_on_stop() -> None:
    sent: list[list[int]] = []
    got = threading.Event()
    handoff = Handoff(lambda ids: (sent.append(ids), got.set()))
    stop = threading.Event()
    thread = threading.Thread(target=handoff.run, args=(stop,))
    defaults_wait, defaults.HANDOFF_SECONDS = defaults.HANDOFF_SECONDS, 60.0
    try:
        thread.start()
        handoff.add(list(range(defaults.BATCH_SIZE)))
        assert got.wait(5)  # a full batch does not wait for the period
        handoff.add([9999])
        stop.set()
        handoff.add([10000])
        handoff._full.set()  # wake the loop so it sees the stop
        thread.join(5)
    finally:
        defaults.HANDOFF_SECONDS = defaults_wait
    assert sent[0] == list(range(defaults.BATCH_SIZE))
    assert sum(sent[1:], []) == [9999, 10000]  # flushed on the way out


def _running(handoff: Handoff, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=handoff.run, args=(stop,))
    thread.start()
    return thread


def test_events_go_at_once_when_no_job_waits_for_a_worker() -> None:
    sent: list[tuple[float, list[int]]] = []
    got = threading.Event()
    handoff = Handoff(lambda ids: (sent.append((time.monotonic(), ids)), got.set()))
    stop = threading.Event()
    thread = _running(handoff, stop)
    try:
        for n in range(3):
            got.clear()
            added = time.monotonic()
            handoff.add([n])
            assert got.wait(5)
            assert sent[-1][0] - added < 0.02  # no coalescing window at a trickle
    finally:
        stop.set()
        thread.join(5)
    assert [ids for _at, ids in sent] == [[0], [1], [2]]


def test_events_are_held_while_a_job_waits_and_go_together_once_it_is_taken() -> None:
    sent: list[list[int]] = []
    queued = [1]  # a job of ours waits in the queue: the workers are busy
    handoff = Handoff(sent.append, waiting=lambda: queued[0])
    stop = threading.Event()
    thread = _running(handoff, stop)
    try:
        for n in range(5):
            handoff.add([n])
            time.sleep(0.01)
        assert sent == []
        queued[0] = 0  # a worker took it
        wait_until(lambda: sent, 5, "the held events")
        assert sent == [[0, 1, 2, 3, 4]]
    finally:
        stop.set()
        thread.join(5)


def test_held_events_go_after_the_handoff_period_even_if_the_queue_stays_full() -> None:
    sent: list[list[int]] = []
    handoff = Handoff(sent.append, waiting=lambda: 1)
    stop = threading.Event()
    thread = _running(handoff, stop)
    try:
        started = time.monotonic()
        handoff.add([1])
        wait_until(lambda: sent, 5, "the held events")
        assert time.monotonic() - started >= defaults.HANDOFF_SECONDS * 0.9
    finally:
        stop.set()
        thread.join(5)


def test_redis_unreachable_does_not_hold_the_events() -> None:
    sent: list[list[int]] = []

    def unreachable() -> int:
        raise redis.ConnectionError("down")

    handoff = Handoff(sent.append, waiting=unreachable)
    stop = threading.Event()
    thread = _running(handoff, stop)
    try:
        handoff.add([7])
        wait_until(lambda: sent, 1, "the events")
    finally:
        stop.set()
        thread.join(5)
