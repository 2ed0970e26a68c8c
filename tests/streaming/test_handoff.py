"""A stream process serving many orgs hands their stored events to the workers together."""

from __future__ import annotations

import threading

from bridge import defaults
from bridge.streaming.fleet import Handoff


def test_events_of_many_orgs_make_one_job() -> None:
    sent: list[list[int]] = []
    handoff = Handoff(sent.append)
    for org in range(200):  # one change in each of 200 orgs
        handoff.add([org])
    handoff.flush()
    assert sent == [list(range(200))]
    handoff.flush()
    assert len(sent) == 1  # nothing more to send


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
