"""The pushes report's filters (org, state, error code, object, kind) and repushing every push
they select: the report's "Repush all matching…" and `POST /api/v1/pushes/repush` run the same
query, so what a confirmation lists is what is repushed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from bridge import audit, writeback
from bridge.store.models import OrgConnection, Push
from bridge.vocabulary import PUSH_KINDS, PUSH_STATES, REPUSHABLE
from bridge.web.actions import ActionError, Unprocessable

PUSH_FILTERS = ("org", "state", "code", "object", "kind")
#: The most pushes one bulk repush puts back to pending; the rest wait for the next one.
REPUSH_LIMIT = 500
NO_CODE = "(no error code)"


def filters_from(values: Mapping[str, Any]) -> dict[str, str]:
    """The filters given (empty ones left out, each cut to 200 characters)."""
    out = {k: str(values.get(k) or "").strip()[:200] for k in PUSH_FILTERS}
    return {k: v for k, v in out.items() if v}


def check(s: Session, f: Mapping[str, str], *, repush: bool = False) -> None:
    """400 `invalid_filter` for a state or kind that does not exist (for a repush: a state
    that cannot be repushed), 422 `unknown_org` for an org with no connection."""
    states = REPUSHABLE if repush else PUSH_STATES
    if "state" in f and f["state"] not in states:
        raise ActionError(
            f"state is one of {', '.join(states)}, not '{f['state']}'",
            code="invalid_filter",
            fields=["state"],
        )
    if "kind" in f and f["kind"] not in PUSH_KINDS:
        raise ActionError(
            f"kind is one of {', '.join(PUSH_KINDS)}, not '{f['kind']}'",
            code="invalid_filter",
            fields=["kind"],
        )
    org = f.get("org")
    if org and s.scalar(select(OrgConnection.id).where(OrgConnection.name == org)) is None:
        raise Unprocessable(f"no connected org named '{org}'", code="unknown_org", fields=["org"])


def query(f: Mapping[str, str]) -> Select[Push]:
    """The pushes the filters select (a state or kind that does not exist selects nothing)."""
    q = select(Push)
    if "org" in f:
        q = q.join(OrgConnection, OrgConnection.id == Push.org_connection_id).where(
            OrgConnection.name == f["org"]
        )
    if "state" in f:
        q = q.where(Push.state == f["state"])
    if "code" in f:
        q = q.where(Push.error_code == f["code"])
    if "object" in f:
        q = q.where(Push.sobject_type == f["object"])
    if "kind" in f:
        q = q.where(Push.kind == f["kind"])
    return q


def repushable(f: Mapping[str, str]) -> Select[Push]:
    """The pushes of `query` that can be repushed, oldest first."""
    return query(f).where(Push.state.in_(REPUSHABLE)).order_by(Push.id)


def options(s: Session) -> dict[str, list[str]]:
    """The values each filter can take, for the report's selects."""
    return {
        "org": list(s.scalars(select(OrgConnection.name).order_by(OrgConnection.name))),
        "code": list(
            s.scalars(
                select(Push.error_code)
                .where(Push.error_code.is_not(None))
                .distinct()
                .order_by(Push.error_code)
            )
        ),
        "object": list(s.scalars(select(Push.sobject_type).distinct().order_by(Push.sobject_type))),
    }


def error_codes(pushes: Collection[Push]) -> dict[str, int]:
    """Error code -> how many of `pushes` failed with it, most first."""
    return dict(Counter(p.error_code or NO_CODE for p in pushes).most_common())


def in_words(codes: Mapping[str, int]) -> str:
    """The codes in words: `STRING_TOO_LONG × 2, FIELD_CUSTOM_VALIDATION_EXCEPTION × 1`."""
    return ", ".join(f"{code} × {n}" for code, n in codes.items())


@dataclass
class Repushed:
    pushes: list[int]
    error_codes: dict[str, int]
    remaining: int  # more that match, past REPUSH_LIMIT
    gone: list[int] = field(default_factory=list)  # confirmed but no longer matching


def select_matching(s: Session, f: Mapping[str, str], limit: int | None = None) -> Repushed:
    """What a repush of the filters would do, changing nothing."""
    limit = limit or REPUSH_LIMIT
    rows = list(s.scalars(repushable(f).limit(limit + 1)))
    more = 0
    if len(rows) > limit:
        rows = rows[:limit]
        more = _count(s, f) - limit
    return Repushed([p.id for p in rows], error_codes(rows), more)


def repush_matching(
    s: Session,
    f: Mapping[str, str],
    *,
    actor: str,
    confirmed: Collection[int] | None = None,
    limit: int | None = None,
) -> Repushed:
    """Put every push the filters select back to pending (each audited `push.repush`, the
    whole `push.bulk_repush`). With `confirmed` (the ids a confirmation listed) only those
    that still match are repushed, and the others named in `gone`. The caller enqueues."""
    limit = limit or REPUSH_LIMIT
    if confirmed is not None:
        rows = list(s.scalars(repushable(f).where(Push.id.in_(list(confirmed)[:limit]))))
        found = {p.id for p in rows}
        done = Repushed(
            [p.id for p in rows],
            error_codes(rows),
            0,
            sorted(i for i in confirmed if i not in found),
        )
    else:
        done = select_matching(s, f, limit)
    if not done.pushes:
        return done
    for push_id in done.pushes:
        writeback.repush(s, push_id, actor=actor)
    audit.record(
        s,
        actor,
        "push.bulk_repush",
        "push",
        None,
        filters=dict(f),
        count=len(done.pushes),
        error_codes=done.error_codes,
        pushes=done.pushes,
    )
    return done


def _count(s: Session, f: Mapping[str, str]) -> int:
    return s.scalar(select(func.count()).select_from(repushable(f).subquery())) or 0
