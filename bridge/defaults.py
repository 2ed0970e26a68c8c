"""Every timing, size and queue name of the bridge's processes, one per line (rq's defaults.py
style), each with what it is for.

Those read with `_env` can be overridden by an environment variable of the same name prefixed
``SFBRIDGE_`` (e.g. ``SFBRIDGE_LEASE_TTL_SECONDS=3``), which the fault tests use to keep lapses
short. Modules read them as ``defaults.NAME`` at the time of use, so a test can patch one here.
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


# ---- the web: sessions and sign-in (bridge.web.sessions, bridge.throttle) -------------------

SESSION_IDLE_MINUTES = _env("SESSION_IDLE_MINUTES", 30)
"""A browser session unused this long ends (ASVS 3.3.2, level 2)."""

SESSION_MAX_HOURS = _env("SESSION_MAX_HOURS", 12)
"""A browser session ends this long after sign-in however busy it is (ASVS 3.3.2, level 2)."""

SESSION_TOUCH_EVERY_SECONDS = 30
"""A session's last use is written at most this often (not a row write per request)."""

LOGIN_FREE_ATTEMPTS = 5
"""Failed sign-ins of an account (or of one browser that signed in to it) before any wait."""

LOGIN_ADDRESS_FREE_ATTEMPTS = 20
"""Failed sign-ins from one client address before its attempts wait."""

LOGIN_FIRST_DELAY_SECONDS = 30
"""The wait after the last free failure; it doubles with each further failure..."""

LOGIN_MAX_DELAY_SECONDS = 15 * 60
"""...up to this."""

LOGIN_FORGET_SECONDS = 6 * 3600
"""Failed sign-ins with no attempt after them for this long are forgotten."""

DEVICE_COOKIE_DAYS = 180
"""How long a browser that signed in to an account is known to it (the device cookie)."""

# ---- queues and job policy (bridge.jobs.enqueue is the one place that applies them) ----------

INBOUND_QUEUE = "inbound"
"""rq queue of inbound batch jobs (stored events → entries)."""

OUTBOUND_QUEUE = "outbound"
"""rq queue of writeback jobs (pushes → Salesforce)."""

QUEUES = (INBOUND_QUEUE, OUTBOUND_QUEUE)
"""What `sfbridge worker` works on by default, and what /metrics reports the depth of."""

JOB_TIMEOUT_SECONDS = int(_env("JOB_TIMEOUT_SECONDS", 600))
"""rq job timeout for one inbound batch."""

JOB_RETRY_INTERVALS = (5, 30, 120)
"""Seconds before each rq retry of an inbound batch job that raised (network, locked rows)."""

OUTBOUND_JOB_TIMEOUT_SECONDS = 600
"""rq job timeout for one send job (lookups plus one request per 200 records)."""

OUTBOUND_RETRY_INTERVALS = (10, 30, 120, 600)
"""Seconds between runs of a send job whose pushes hit a transient error (needs the rq
scheduler). The first run plus these retries make writeback's MAX_ATTEMPTS sends, after which
the push is failed."""

OUTBOUND_SWEEP_AFTER_SECONDS = OUTBOUND_JOB_TIMEOUT_SECONDS + sum(OUTBOUND_RETRY_INTERVALS)
"""A push pending and untouched this long lost its job: the sweeper enqueues it again."""

OUTBOUND_WINDOW_SECONDS = _env("OUTBOUND_WINDOW_SECONDS", 0.25)
"""The coalescing window: a drain of an org's pending pushes starts this long after the first
push that asked for it, so the pushes saved meanwhile go in the same batched calls."""

OUTBOUND_DRAIN_LIMIT = int(_env("OUTBOUND_DRAIN_LIMIT", 10_000))
"""Pushes one drain takes at most; a drain that took this many asks for the next at once."""

OUTBOUND_CLAIM_SECONDS = OUTBOUND_JOB_TIMEOUT_SECONDS
"""How long a drain's claim on its pushes holds: longer than the job may run, so a push is never
sent by two drains; a worker killed mid-drain leaves its pushes free again after this."""

OUTBOUND_DRAIN_KEY_TTL_SECONDS = 60
"""Lifetime of the Redis key saying "a drain of this org is queued": if the job is lost with
Redis, the key lapses and the next push (or the sweep) asks again."""

JOB_RESULT_TTL_SECONDS = 300
"""How long rq keeps a finished job's result."""

JOB_FAILURE_TTL_SECONDS = 7 * 24 * 3600
"""How long rq keeps a failed job (for a person to look at)."""

# ---- inbound batches -------------------------------------------------------------------------

BATCH_SIZE = int(_env("BATCH_SIZE", 200))
"""Events per inbound job: one Salesforce collection (IN lookups take up to 200 ids)."""

SAVE_CHUNK = 50
"""Entries saved per transaction within a batch (keeps SQLite's write lock short)."""

CLAIM_TIMEOUT_SECONDS = _env("CLAIM_TIMEOUT_SECONDS", 30.0)
"""An event whose claim (`processing`) was not renewed this long belongs to a dead worker: the
sweeper enqueues it again and the next job takes it over. A live job renews its claim (the
heartbeat), so a batch may run longer than this; a killed worker's events wait at most this
plus SWEEP_EVERY_SECONDS."""

CLAIM_RENEW_FRACTION = 1 / 3
"""A running batch renews its claim after this fraction of the claim timeout, so two renewals
can be late (a busy database) before the claim lapses."""

REDIS_RETRY_MAX_SECONDS = _env("REDIS_RETRY_MAX_SECONDS", 5.0)
"""The longest a worker waits before trying an unreachable Redis again (rq's own backoff
doubles up to 60 s, which left a worker idle for up to a minute after a Redis restart), and
its pause before starting rq's work loop again when that loop ended on a Redis error."""

# ---- the worker's sweeper --------------------------------------------------------------------

SWEEP_EVERY_SECONDS = _env("SWEEP_EVERY_SECONDS", 15.0)
"""How often each worker process runs the sweeper (a Redis lock lets one run at a time)."""

SWEEP_AFTER_SECONDS = _env("SWEEP_AFTER_SECONDS", 120.0)
"""An event still `new` this long after it was stored is enqueued again (lost job, Redis down)."""

NOTIFY_RETRY_EVERY_SECONDS = _env("NOTIFY_RETRY_EVERY_SECONDS", 300.0)
"""How often review notifications left pending or failed are sent again (once across workers)."""

ANALYZE_EVERY_SECONDS = _env("ANALYZE_EVERY_SECONDS", 3600.0)
"""How often the query planner's statistics are refreshed (`Store.analyze`, once across
workers): SQLite has none unless asked, and plans go wrong as the store grows without them."""

# ---- the subscriber --------------------------------------------------------------------------

LEASE_TTL_SECONDS = _env("LEASE_TTL_SECONDS", 30.0)
"""How long the subscriber's lease in Redis lives unless renewed (a dead holder lapses then)."""

LEASE_RENEW_FRACTION = 1 / 3
"""The lease is renewed after this fraction of its TTL, so two renewals can fail in a row."""

LEASE_WAIT_SECONDS = _env("LEASE_WAIT_SECONDS", 1.0)
"""How often a waiting subscriber tries to take the lease over."""

FLEET_ROUND_SECONDS = _env("FLEET_ROUND_SECONDS", 1.0)
"""How often a stream process tries to take the leases of the orgs nobody serves."""

FLEET_CONFIG_EVERY_SECONDS = _env("FLEET_CONFIG_EVERY_SECONDS", 30.0)
"""How often a stream process reads the config file again (new, changed and removed orgs)."""

FLEET_RETRY_SECONDS = _env("FLEET_RETRY_SECONDS", 30.0)
"""An org whose stream ended (unreachable, not connected, a PushTopic missing) is tried again
after this long."""

FLEET_STOP_WAIT_SECONDS = 10.0
"""On SIGTERM, how long to wait for an org stream that is storing a delivery."""

HANDOFF_SECONDS = 0.25
"""A stream process serving many orgs hands their stored events to the workers as soon as a
worker can take them; while a job of theirs still waits in the queue the new ones are held, at
most this long (bridge.streaming.fleet.Handoff)."""

HANDOFF_RECHECK_SECONDS = (0.002, 0.01)
"""While events are held, the queue is asked whether the workers took the job after the
first, then twice as long each time up to the second (fewer LLENs while the workers are
busy)."""

STREAM_CAPACITY = 50
"""Orgs one stream process serves at most (`stream.capacity` in the config file)."""

RECONNECT_WINDOW_SECONDS = 40.0
"""Salesforce drops a client that has not sent /meta/connect again within 40 s of a response."""

CONNECT_TIMEOUT_MARGIN_SECONDS = 15.0
"""Added to the server's advised long-poll timeout to get our HTTP read timeout."""

DEFAULT_LONG_POLL_SECONDS = 110.0
"""Salesforce's advised long-poll timeout (advice.timeout 110000 ms) until the server says."""

RETRY_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits between attempts after network errors or a server that says `retry` with no interval."""

STALL_AFTER_SECONDS = _env("STALL_AFTER_SECONDS", 120.0)
"""A channel offered events that have not been stored for this long is stalled: /readyz fails
and names it (bridge.streaming.stall)."""

PUBSUB_BATCH = 100
"""Pub/Sub API flow control: events the subscriber asks for at once, and again after storing
each delivery (Salesforce caps num_requested at 100)."""

BACKFILL_PROGRESS_EVERY = 1000
"""A long backfill prints a progress line every this many records."""

# ---- HTTP to Salesforce (bridge.salesforce.connection) ---------------------------------------

API_TIMEOUT = (10, 120)
"""Connect and read timeouts of API calls, in seconds (simple-salesforce passes none)."""

TOKEN_TIMEOUT = (10, 30)
"""Connect and read timeouts of OAuth token requests, in seconds."""

CONNECT_RETRIES = 3
"""Attempts after the first for connection failures (any method: the request never arrived)."""

STATUS_RETRIES = 3
"""Attempts after the first for 502/503/504 and read failures (idempotent methods only)."""

BACKOFF_FACTOR = 0.5
"""urllib3 backoff between those attempts: none before the first retry, then 0.5 s, 1 s, 2 s…"""

# ---- API budget guard (bridge.salesforce.budget) --------------------------------------------

BUDGET_PAGE_PAUSE_SECONDS = _env("BUDGET_PAGE_PAUSE_SECONDS", 1.0)
"""Over the budget, a backfill waits this × `api_budget.slow_factor` between pages."""

BUDGET_READ_EVERY_SECONDS = _env("BUDGET_READ_EVERY_SECONDS", 300.0)
"""A poll round asks the `limits` resource when it knows no API usage newer than this."""

DESCRIBE_CACHE_SECONDS = _env("DESCRIBE_CACHE_SECONDS", 3600.0)
"""How long an object's describe (field lengths, picklist values) is reused to check API input
before it is read from the org again (per process and in Redis, shared by the web workers)."""

# ---- imports (bridge.imports.run) ------------------------------------------------------------

IMPORT_BATCH_SIZE = int(_env("IMPORT_BATCH_SIZE", 200))
"""Rows of `sfbridge import` looked up in Salesforce and committed together (a collection of
200 records is Salesforce's most per request); the tests set it lower to cross batches with
few rows."""

# ---- metrics ---------------------------------------------------------------------------------

METRICS_PAUSE_AFTER_FAILURE_SECONDS = 30.0
"""Seconds the API-call counter stops counting after Redis failed, so an outage does not slow
every call."""

USER_MAP_CACHE_SECONDS = _env("USER_MAP_CACHE_SECONDS", 600.0)
"""How long an org's resolved user mapping (reps -> active Salesforce users) is reused."""

# ---- console ----------------------------------------------------------------------------------

HEALTH_REFRESH_SECONDS = _env("HEALTH_REFRESH_SECONDS", 10.0)
"""How often the dashboard and the integration health page poll `/integration.json`."""
