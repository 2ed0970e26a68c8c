"""Writeback: referrals, activities and field updates written to Salesforce as saved pushes.

Callers (the JSON API, the reports' repush) queue a push inside their transaction, commit,
then enqueue it:

    push = queue_referral_add(session, org, org_config, referral)   # or queue_activity(...)
    ... commit ...
    request_drain(redis_connection, org.id)   # the org's next drain sends it, batched

`repush(session, push_id, actor=...)` puts a failed or skipped push back to pending.

The job functions (`request_drain`, `enqueue_push`, `send_pushes`, ...) are loaded when first
used: the jobs build on the rq job layer, which runs the receiver, whose effects queue pushes
through this package (field sync, link-back), so importing them here eagerly would close that
circle.
"""

from typing import TYPE_CHECKING, Any

from bridge.writeback.activities import Activity, activity_object, parse_activity, queue_activity
from bridge.writeback.field_updates import queue_field_update
from bridge.writeback.pushes import MAX_ATTEMPTS, queue_push, repush
from bridge.writeback.referrals import queue_referral_add, referral_record

if TYPE_CHECKING:
    from bridge.writeback.jobs import (
        drain_org,
        enqueue_pending,
        enqueue_push,
        request_drain,
        request_drain_for,
        send_push,
        send_pushes,
    )

_JOBS = (
    "drain_org",
    "enqueue_pending",
    "enqueue_push",
    "request_drain",
    "request_drain_for",
    "send_push",
    "send_pushes",
)


def __getattr__(name: str) -> Any:
    if name in _JOBS:
        from bridge.writeback import jobs

        return getattr(jobs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_ATTEMPTS",
    "Activity",
    "activity_object",
    "drain_org",
    "enqueue_pending",
    "enqueue_push",
    "parse_activity",
    "queue_activity",
    "queue_field_update",
    "queue_push",
    "queue_referral_add",
    "referral_record",
    "repush",
    "request_drain",
    "request_drain_for",
    "send_push",
    "send_pushes",
]
