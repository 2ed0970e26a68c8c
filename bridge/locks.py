"""One at a time across workers: a Redis key that lapses by itself."""

from __future__ import annotations

import redis


def once_per(client: redis.Redis, key: str, seconds: float) -> bool:
    """True for the first caller across all processes within `seconds` of it, else False.

    For periodic work every worker runs (sweeps, resends): the key is never deleted, it lapses,
    so a process that dies holding it blocks nobody for long. Redis unreachable: False, and
    the next round tries again.
    """
    try:
        return bool(client.set(key, "1", nx=True, px=max(int(seconds * 1000), 1)))
    except redis.RedisError:
        return False
