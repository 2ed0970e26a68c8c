"""SystemModstamp polling (`sfbridge poll`), and the gap backfill the subscriber starts.

Each object is queried from its poll cursor minus an overlap window (changes committed late
with an earlier SystemModstamp are still seen), ordered by SystemModstamp, Id and paged with
nextRecordsUrl. Every page is stored and the cursor moved in one transaction, so a killed poll
resumes where its last page ended. Records are stored as InboundEvents with source `poll`;
one that streaming already delivered has the same change_key and is absorbed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from simple_salesforce import format_soql
from sqlalchemy import delete

from bridge import defaults
from bridge.config import OrgConfig
from bridge.receiver.relational import record_fields
from bridge.salesforce import budget
from bridge.store import Store
from bridge.store.models import SyncCursor, utcnow
from bridge.streaming import inbox
from bridge.streaming.events import MalformedEvent, from_polled_record
from bridge.vocabulary import STREAMED_OBJECTS

log = logging.getLogger("sfbridge.poll")

SYSTEM_FIELDS = ("Id", "SystemModstamp", "CreatedDate", "LastModifiedDate", "LastModifiedById")
BACKFILL_PREFIX = inbox.BACKFILL_PREFIX

Echo = Callable[[str], None]


def poll_channel(sobject: str) -> str:
    return f"{inbox.POLL_PREFIX}{sobject}"


def poll_fields(org: OrgConfig, sobject: str) -> list[str]:
    """System fields, the fields the relational rules need and every field the config reads."""
    out = list(SYSTEM_FIELDS)
    for name in record_fields(org, sobject):
        if name not in out:
            out.append(name)
    return out


def build_query(
    sobject: str, fields: list[str], since: datetime, until: datetime | None = None
) -> str:
    # format_soql drops milliseconds from datetimes: `>=` on the second before keeps every
    # record; the overlap it adds is absorbed by change_key.
    if until is None:
        return format_soql(
            "SELECT {fields:literal} FROM {sobject:literal} WHERE SystemModstamp >= {since} "
            "ORDER BY SystemModstamp, Id",
            fields=", ".join(fields),
            sobject=sobject,
            since=since,
        )
    return format_soql(
        "SELECT {fields:literal} FROM {sobject:literal} WHERE SystemModstamp >= {since} "
        "AND SystemModstamp <= {until} ORDER BY SystemModstamp, Id",
        fields=", ".join(fields),
        sobject=sobject,
        since=since,
        until=until + timedelta(seconds=1),
    )


def pages(sforg: Any, soql: str, page_size: int) -> Iterator[list[dict[str, Any]]]:
    """Query results page by page (nextRecordsUrl); `batchSize` is 200..2000 in Salesforce."""
    headers = {"Sforce-Query-Options": f"batchSize={min(max(page_size, 200), 2000)}"}
    result = sforg.call(sforg.sf.query, soql, headers=headers)
    while True:
        yield list(result.get("records", []))
        if result.get("done", True) or not result.get("nextRecordsUrl"):
            return
        result = sforg.call(
            sforg.sf.query_more, result["nextRecordsUrl"], identifier_is_url=True, headers=headers
        )


def sync(
    store: Store,
    sforg: Any,
    org_connection_id: int,
    org: OrgConfig,
    sobject: str,
    since: datetime,
    *,
    cursor_channel: str,
    enqueue: Callable[[list[int]], object],
    until: datetime | None = None,
    echo: Echo | None = None,
    stop: threading.Event | None = None,
) -> tuple[int, int]:
    """Store every change of `sobject` since `since`; returns (records read, new events)."""
    soql = build_query(sobject, poll_fields(org, sobject), since, until)
    read = new = 0
    next_report = defaults.BACKFILL_PROGRESS_EVERY
    channel = poll_channel(sobject)
    for page in pages(sforg, soql, org.polling.page_size):
        events = []
        for record in page:
            try:
                events.append(from_polled_record(sobject, record, channel))
            except MalformedEvent as exc:
                log.warning("poll: %s record skipped: %s", sobject, exc)
        read += len(page)
        with store.session() as session:
            ids = inbox.store_events(session, org_connection_id, events)
            stamps = [e.modstamp for e in events if e.modstamp is not None]
            if stamps:
                inbox.advance_modstamp(session, org_connection_id, cursor_channel, max(stamps))
        new += len(ids)
        if ids:
            enqueue(ids)
        if echo and read >= next_report:
            echo(f"{sobject}: {read} records read, {new} new (up to {max(stamps).isoformat()})")
            next_report += defaults.BACKFILL_PROGRESS_EVERY
        if stop is not None and (stop.is_set() or stop.wait(_page_pause(sforg, org, sobject))):
            break
    return read, new


def _page_pause(sforg: Any, org: OrgConfig, sobject: str) -> float:
    """The API budget guard on backfill and polling pages: none, or a pause while the org is
    over its budget (bridge.salesforce.budget)."""
    usage = getattr(sforg, "api_usage", None)
    if usage is None or not usage.over(org.api_budget.share):
        return 0.0
    wait = defaults.BUDGET_PAGE_PAUSE_SECONDS * org.api_budget.slow_factor
    log.info("poll: %s: the org has used %s; %.0fs between pages", sobject, usage.words(), wait)
    return wait


def poll_once(
    store: Store,
    sforg: Any,
    org_connection_id: int,
    org: OrgConfig,
    *,
    enqueue: Callable[[list[int]], object],
    objects: tuple[str, ...] = STREAMED_OBJECTS,
    echo: Echo | None = None,
) -> dict[str, tuple[int, int]]:
    """One polling round over `objects`, each from its cursor minus the overlap window."""
    overlap = timedelta(seconds=org.polling.overlap_seconds)
    out = {}
    for sobject in objects:
        started = utcnow()
        with store.session() as session:
            cursor = inbox.get_cursor(session, org_connection_id, poll_channel(sobject))
            last = cursor.modstamp if cursor is not None else None
            first = last is None
            since = (last or started) - overlap
        out[sobject] = sync(
            store,
            sforg,
            org_connection_id,
            org,
            sobject,
            since,
            cursor_channel=poll_channel(sobject),
            enqueue=enqueue,
            echo=echo,
        )
        if first:
            # The first round read everything up to its start: the next one starts there even
            # when nothing had changed (else a quiet org's changes between two rounds further
            # apart than the overlap window would never be read).
            with store.session() as session:
                inbox.advance_modstamp(session, org_connection_id, poll_channel(sobject), started)
        log.info("poll: %s since %s: %d read, %d new", sobject, since.isoformat(), *out[sobject])
    return out


def start_safety_net(
    store: Store,
    open_org: Callable[[], Any],
    org_connection_id: int,
    org: OrgConfig,
    *,
    enqueue: Callable[[list[int]], object],
    active: Callable[[], bool],
    stop: threading.Event,
) -> threading.Thread | None:
    """The safety-net poll of a stream process: a polling round every `polling.every` seconds
    while `active()` (the process holds the org's lease), with its own org connection. Changes
    the stream also delivered have the same change_key and are absorbed."""
    if not org.polling.safety_net:
        return None

    def loop() -> None:
        sforg = None
        # Work that can wait: rounds slow down while the org is over its API budget.
        while not stop.wait(
            budget.deferrable_wait(
                getattr(sforg, "api_usage", None),
                org.api_budget.share,
                org.polling.every,
                org.api_budget.slow_factor,
            )
        ):
            if not active():
                continue
            try:
                sforg = sforg or open_org()
                results = poll_once(store, sforg, org_connection_id, org, enqueue=enqueue)
                new = sum(n for _, n in results.values())
                if new:
                    log.info(
                        "poll: the safety net found %d change(s) the stream did not bring", new
                    )
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("poll: safety-net round failed; trying again next round")

    thread = threading.Thread(target=loop, name="safety-net-poll", daemon=True)
    thread.start()
    return thread


def backfill(
    store: Store,
    sforg: Any,
    org_connection_id: int,
    org: OrgConfig,
    sobject: str,
    since: datetime,
    *,
    enqueue: Callable[[list[int]], object],
    echo: Echo | None = None,
    stop: threading.Event | None = None,
) -> tuple[int, int]:
    """Store every change of `sobject` since `since` (a gap, or history to import).

    Progress is kept in the `backfill:<Object>` cursor, removed when the backfill completes,
    so an interrupted backfill can be resumed (`run_pending_backfill`).
    """
    channel = BACKFILL_PREFIX + sobject
    with store.session() as session:
        row = inbox.get_cursor(session, org_connection_id, channel)
        if row is None:
            session.add(
                SyncCursor(org_connection_id=org_connection_id, channel=channel, modstamp=since)
            )
    return _run_backfill(store, sforg, org_connection_id, org, sobject, since, enqueue, echo, stop)


def run_pending_backfill(
    store: Store,
    sforg: Any,
    org_connection_id: int,
    org: OrgConfig,
    sobject: str,
    *,
    enqueue: Callable[[list[int]], object],
    echo: Echo | None = None,
    stop: threading.Event | None = None,
) -> tuple[int, int]:
    """Run (or resume) the backfill recorded in the `backfill:<Object>` cursor, if any."""
    with store.session() as session:
        row = inbox.get_cursor(session, org_connection_id, BACKFILL_PREFIX + sobject)
        since = row.modstamp if row is not None else None
    if since is None:
        return 0, 0
    return _run_backfill(store, sforg, org_connection_id, org, sobject, since, enqueue, echo, stop)


def _run_backfill(
    store: Store,
    sforg: Any,
    org_connection_id: int,
    org: OrgConfig,
    sobject: str,
    since: datetime,
    enqueue: Callable[[list[int]], object],
    echo: Echo | None,
    stop: threading.Event | None,
) -> tuple[int, int]:
    channel = BACKFILL_PREFIX + sobject
    say = echo or (lambda text: log.info("backfill: %s", text))
    say(f"{sobject}: backfilling changes since {since.isoformat()}")
    read, new = sync(
        store,
        sforg,
        org_connection_id,
        org,
        sobject,
        since,
        cursor_channel=channel,
        enqueue=enqueue,
        echo=say,
        stop=stop,
    )
    if stop is not None and stop.is_set():
        say(f"{sobject}: backfill interrupted after {read} records; it resumes on the next start")
        return read, new
    with store.session() as session:
        session.execute(
            delete(SyncCursor).where(
                SyncCursor.org_connection_id == org_connection_id, SyncCursor.channel == channel
            )
        )
    say(f"{sobject}: backfill done: {read} records read, {new} new changes stored")
    return read, new
