"""The subscriber's lease on a real Redis: one holder, renewal, takeover, Redis losing it."""

from __future__ import annotations

import time

import redis

from bridge.streaming.lease import Lease


def test_one_holder_at_a_time_and_takeover_after_release(redis_client: redis.Redis) -> None:
    first = Lease(redis_client, "lease:test", ttl_seconds=30)
    second = Lease(redis_client, "lease:test", ttl_seconds=30)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder() == first.token
    first.release()
    assert second.acquire()


def test_a_dead_holder_lapses(redis_client: redis.Redis) -> None:
    dead = Lease(redis_client, "lease:test", ttl_seconds=0.2)
    assert dead.acquire()  # and never renews
    waiting = Lease(redis_client, "lease:test", ttl_seconds=30)
    deadline = time.monotonic() + 5
    while not waiting.acquire():
        assert time.monotonic() < deadline, "the lease never lapsed"
        time.sleep(0.05)


def test_renewal_keeps_it_and_notices_a_takeover(redis_client: redis.Redis) -> None:
    holder = Lease(redis_client, "lease:test", ttl_seconds=30)
    assert holder.acquire()
    assert holder.renew()
    assert redis_client.pttl("lease:test") > 29_000
    redis_client.set("lease:test", "someone-else")  # e.g. our lease lapsed while paused
    assert not holder.renew()
    assert holder.lost.is_set()
    holder.release()
    assert redis_client.get("lease:test") == b"someone-else"  # not ours to delete


def test_renewal_takes_it_back_after_redis_lost_it(redis_client: redis.Redis) -> None:
    holder = Lease(redis_client, "lease:test", ttl_seconds=30)
    assert holder.acquire()
    redis_client.flushdb()  # a Redis restart without persistence
    assert holder.renew()
    assert redis_client.get("lease:test") == holder.token.encode()
