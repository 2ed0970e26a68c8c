"""Timings and sizes for the inbound side, one per line (rq's defaults.py style).

Each can be overridden by an environment variable of the same name prefixed ``SFBRIDGE_``
(e.g. ``SFBRIDGE_LEASE_TTL_SECONDS=3``), which the fault tests use to keep lapses short.
"""

from __future__ import annotations

import os


def _env(name: str, default: float) -> float:
    raw = os.environ.get(f"SFBRIDGE_{name}")
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"SFBRIDGE_{name}={raw!r} is not a number") from None


LEASE_TTL_SECONDS = _env("LEASE_TTL_SECONDS", 30.0)
"""How long the subscriber's lease in Redis lives unless renewed (a dead holder lapses then)."""

LEASE_RENEW_FRACTION = 1 / 3
"""The lease is renewed after this fraction of its TTL, so two renewals can fail in a row."""

LEASE_WAIT_SECONDS = _env("LEASE_WAIT_SECONDS", 1.0)
"""How often a waiting subscriber tries to take the lease over."""

RECONNECT_WINDOW_SECONDS = 40.0
"""Salesforce drops a client that has not sent /meta/connect again within 40 s of a response."""

CONNECT_TIMEOUT_MARGIN_SECONDS = 15.0
"""Added to the server's advised long-poll timeout to get our HTTP read timeout."""

DEFAULT_LONG_POLL_SECONDS = 110.0
"""Salesforce's advised long-poll timeout (advice.timeout 110000 ms) until the server says."""

RETRY_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits between attempts after network errors or a server that says `retry` with no interval."""

BATCH_SIZE = int(_env("BATCH_SIZE", 200))
"""Events per inbound job: one Salesforce collection (IN lookups take up to 200 ids)."""

SAVE_CHUNK = 50
"""Entries saved per transaction within a batch (keeps SQLite's write lock short)."""

JOB_TIMEOUT_SECONDS = int(_env("JOB_TIMEOUT_SECONDS", 600))
"""rq job timeout for one batch."""

JOB_RETRIES = 3
"""rq retries for a batch job that raised (network, locked rows); set at enqueue time."""

JOB_RETRY_INTERVALS = (5, 30, 120)
"""Seconds before each rq retry."""

SWEEP_AFTER_SECONDS = _env("SWEEP_AFTER_SECONDS", 120.0)
"""An event still `new` this long after it was stored is enqueued again (lost job, Redis down)."""

CLAIM_TIMEOUT_SECONDS = _env("CLAIM_TIMEOUT_SECONDS", 900.0)
"""An event claimed (`processing`) this long ago belongs to a dead worker and is enqueued again."""

SWEEP_EVERY_SECONDS = _env("SWEEP_EVERY_SECONDS", 30.0)
"""How often each worker process runs the sweeper (a Redis lock lets one run at a time)."""

NOTIFY_RETRY_EVERY_SECONDS = _env("NOTIFY_RETRY_EVERY_SECONDS", 300.0)
"""How often review notifications left pending or failed are sent again (once across workers)."""

BACKFILL_PROGRESS_EVERY = 1000
"""A long backfill prints a progress line every this many records."""

INBOUND_QUEUE = "inbound"
"""rq queue of inbound batch jobs."""

OUTBOUND_QUEUE = "outbound"
"""rq queue of writeback jobs (owned by the writeback side)."""
