"""Polling rounds against a fake org: where each round starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.store import Store
from bridge.streaming import inbox, poller
from tests.factories import RELATED_FIELDS, org_config


class FakeOrg:
    """Answers every query with the records queued for it (none by default)."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.answers: list[list[dict[str, Any]]] = []
        self.sf = self

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def query(self, soql: str, headers: Any = None) -> dict[str, Any]:
        self.queries.append(soql)
        records = self.answers.pop(0) if self.answers else []
        return {"records": records, "done": True}


def test_a_quiet_first_round_still_fixes_where_the_next_one_starts(
    store: Store, org_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No cursor and nothing changed yet: the next round (later than the overlap window) must
    # still read everything changed since this round, not only the last overlap window.
    org = org_config(RELATED_FIELDS)
    overlap = timedelta(seconds=org.polling.overlap_seconds)
    t0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    sforg = FakeOrg()
    monkeypatch.setattr(poller, "utcnow", lambda: t0)
    poller.poll_once(store, sforg, org_id, org, enqueue=lambda ids: None, objects=("Lead",))
    monkeypatch.setattr(poller, "utcnow", lambda: t0 + 2 * overlap)
    poller.poll_once(store, sforg, org_id, org, enqueue=lambda ids: None, objects=("Lead",))
    first, second = sforg.queries
    assert "SystemModstamp >= 2026-01-05T09:55:00+00:00" in first
    assert "SystemModstamp >= 2026-01-05T09:55:00+00:00" in second
    with store.session() as session:
        row = inbox.get_cursor(session, org_id, "poll:Lead")
        assert row is not None and row.modstamp is not None
        assert row.modstamp.replace(tzinfo=UTC) == t0


def test_a_round_with_changes_starts_the_next_from_the_last_change(
    store: Store, org_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = org_config(RELATED_FIELDS)
    t0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    with store.session() as session:
        inbox.advance_modstamp(
            session, org_id, "poll:Lead", datetime(2026, 1, 5, 9, 50, tzinfo=UTC)
        )
    sforg = FakeOrg()
    sforg.answers = [[{"Id": "00Q000000000001AAA", "SystemModstamp": "2026-01-05T09:58:00.000Z"}]]
    monkeypatch.setattr(poller, "utcnow", lambda: t0)
    poller.poll_once(store, sforg, org_id, org, enqueue=lambda ids: None, objects=("Lead",))
    with store.session() as session:
        row = inbox.get_cursor(session, org_id, "poll:Lead")
        assert row is not None and row.modstamp is not None
        assert row.modstamp.replace(tzinfo=UTC) == datetime(2026, 1, 5, 9, 58, tzinfo=UTC)
