"""Channels that stall: events offered by Salesforce that the subscriber has not stored.

The subscriber notes, per org and channel, when a delivery first arrived that it has not yet
stored (`HSETNX` of the time in a Redis hash), and clears the note once the delivery is stored
and the cursor moved. A note that grows old means the channel's cursor has not moved while
events were offered: the subscriber crashes on them, or the database refuses them. `/readyz`
reports such a channel by name (`stalled_channels`); a quiet channel has no note and never
counts as stalled.

Redis errors are logged and ignored: the note is an alarm, not part of the data path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis

log = logging.getLogger(__name__)

PREFIX = "sfbridge:stream:offered:"


def key(org_name: str) -> str:
    return PREFIX + org_name


class Offered:
    """The notes of one org's subscriber."""

    def __init__(self, client: redis.Redis, org_name: str) -> None:
        self.client = client
        self.key = key(org_name)

    def mark(self, messages: Iterable[Any], pipe: Any = None) -> list[str]:
        """Note the channels of a delivery about to be stored; returns them. `pipe`: a pipeline
        of this client already holding commands (the long poll's API call count), sent with
        the notes in one round trip."""
        channels = sorted(
            {
                str(m.get("channel"))[:255] if isinstance(m, Mapping) else "(unreadable)"
                for m in messages
            }
        )
        pipe = self.client.pipeline() if pipe is None else pipe
        for channel in channels:
            pipe.hsetnx(self.key, channel, f"{time.time():.3f}")
        send(pipe)
        return channels

    def clear(self, channels: list[str]) -> None:
        """The delivery is stored: the channels are no longer waiting."""
        if not channels:
            return
        try:
            self.client.hdel(self.key, *channels)
        except redis.RedisError as exc:
            log.warning("stream: could not clear the offered channels: %s", exc)


def send(pipe: Any) -> None:
    """Send what a pipeline holds (the notes, the counts that went with them); an empty
    pipeline sends nothing."""
    try:
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("stream: could not note the offered channels (or count the call): %s", exc)


def stalled(
    client: redis.Redis, org_name: str, older_than: float, moved_at: Mapping[str, datetime]
) -> dict[str, float]:
    """Channel -> seconds its oldest unstored delivery has waited, for the channels noted more
    than `older_than` seconds ago whose cursor has not moved since (`moved_at`: the cursors'
    update times; a note left by a subscriber killed just after it stored is not a stall)."""
    now = time.time()
    out: dict[str, float] = {}
    for channel, at in client.hgetall(key(org_name)).items():
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        try:
            noted = float(at)
        except ValueError:
            continue
        moved = moved_at.get(name)
        if now - noted > older_than and (moved is None or _epoch(moved) < noted):
            out[name] = round(now - noted, 1)
    return out


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
