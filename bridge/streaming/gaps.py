"""Gap backfills of a subscriber: when the stream cannot replay what was missed (a replay id
past retention, an overflow event), the object is read back by SystemModstamp polling.

A backfill is recorded in a `backfill:<Object>` cursor before it starts, advanced page by page
and removed when it completes (`bridge.streaming.poller.run_pending_backfill`), so a
subscriber killed mid-backfill resumes it on its next start. Each runs in a thread with its
own org connection. Both transports' subscribers use this.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from bridge.store import Store
from bridge.store.models import SyncCursor, utcnow
from bridge.streaming import inbox

log = logging.getLogger("sfbridge.stream")


class GapBackfills:
    def __init__(
        self,
        store: Store,
        org_connection_id: int,
        overlap_seconds: int,
        backfill: Callable[[str], object],
    ) -> None:
        self.store = store
        self.org_connection_id = org_connection_id
        self.overlap_seconds = overlap_seconds
        self.backfill = backfill
        self.threads: dict[str, threading.Thread] = {}

    def start(self, sobject: str, since: datetime | None, what: str) -> None:
        """Backfill `sobject` from `since` (minus the polling overlap); `what` names the
        stream for the log when `since` is unknown (then the last 24 hours)."""
        if since is None:
            log.warning("stream: %s has no time on its cursor; backfilling the last 24 hours", what)
            since = utcnow() - timedelta(hours=24)
        since -= timedelta(seconds=self.overlap_seconds)
        with self.store.session() as session:
            channel = inbox.BACKFILL_PREFIX + sobject
            existing = inbox.get_cursor(session, self.org_connection_id, channel)
            if existing is None:
                session.add(
                    SyncCursor(
                        org_connection_id=self.org_connection_id, channel=channel, modstamp=since
                    )
                )
            elif existing.modstamp is None or existing.modstamp > since:
                existing.modstamp = since
        self.launch(sobject)

    def resume(self) -> None:
        with self.store.session() as session:
            rows = session.scalars(
                select(SyncCursor.channel).where(
                    SyncCursor.org_connection_id == self.org_connection_id,
                    SyncCursor.channel.startswith(inbox.BACKFILL_PREFIX),
                )
            ).all()
        for channel in rows:
            log.info("stream: resuming the unfinished backfill %s", channel)
            self.launch(channel.removeprefix(inbox.BACKFILL_PREFIX))

    def launch(self, sobject: str) -> None:
        running = self.threads.get(sobject)
        if running is not None and running.is_alive():
            return

        def work() -> None:
            try:
                self.backfill(sobject)
            except Exception:  # noqa: BLE001 - the row stays; the next start resumes it
                log.exception(
                    "stream: backfill of %s failed; it resumes on the next start", sobject
                )

        thread = threading.Thread(target=work, name=f"backfill-{sobject}", daemon=True)
        self.threads[sobject] = thread
        thread.start()

    def join(self, timeout: float = 1) -> None:
        for thread in self.threads.values():
            thread.join(timeout=timeout)
