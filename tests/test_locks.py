"""`once_per`: periodic work done by one worker at a time (real Redis)."""

from __future__ import annotations

import redis

from bridge.locks import once_per
from bridge.ports import free_port


def test_only_the_first_caller_within_the_interval_goes(redis_client: redis.Redis) -> None:
    assert once_per(redis_client, "sfbridge:test:round", 30)
    assert not once_per(redis_client, "sfbridge:test:round", 30)  # another worker
    assert once_per(redis_client, "sfbridge:test:other", 30)  # another kind of round


def test_the_lock_lapses_by_itself(redis_client: redis.Redis) -> None:
    assert once_per(redis_client, "sfbridge:test:round", 2.5)
    # Never deleted: it expires, so a worker that dies holding it blocks nobody for long.
    assert 0 < redis_client.pttl("sfbridge:test:round") <= 2500


def test_redis_unreachable_means_not_this_round() -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    assert not once_per(dead, "sfbridge:test:round", 30)
