"""Input checked against the org's fields at the door (docs/writeback.md "Refused at the door").

`read_rules(...)` reads (and caches) the field rules a request's write will be checked against,
**before** the request opens its transaction: reading them may log in to the org and read the
stored connection, which on SQLite must not wait behind the request's own write lock. Inside the
transaction `misfit(...)` uses only what is cached; unknown rules (the org cannot be read now)
let the write through to Salesforce's own judgement.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bridge import writeback
from bridge.config import referral_add_for
from bridge.store.models import OrgConnection, Program, Push
from bridge.web.extensions import store, web
from bridge.writeback import fit
from bridge.writeback.referrals import REFERRAL_IDENTITY

#: Salesforce field -> the API's input field, to name the input that does not fit.
REFERRAL_INPUT = REFERRAL_IDENTITY
ACTIVITY_INPUT = {"Subject": "subject", "Description": "description"}


def read_rules(
    *,
    program: str | None = None,
    org: str | None = None,
    kind: str | None = None,
    push_id: int | None = None,
) -> None:
    """Cache the rules of the object a referral of `program`, an activity of `kind` in `org`,
    or a repush of `push_id` writes."""
    try:
        cfg = web().config()
    except Exception:  # a broken config file: the request itself answers 422 for it
        return
    if cfg is None:
        return
    target: list[tuple[str, str]] = []
    with store().session() as s:
        if program is not None:
            found = s.scalar(select(Program).where(Program.key == program))
            conn = (
                s.get(OrgConnection, found.org_connection_id)
                if found and found.org_connection_id
                else None
            )
            if conn is not None and conn.name in cfg.orgs:
                target.append((conn.name, referral_add_for(cfg.orgs[conn.name], program).create_as))
        if org is not None and org in cfg.orgs and kind is not None:
            target.append((org, writeback.activity_object(kind, cfg.orgs[org])))  # type: ignore[arg-type]
        if push_id is not None:
            push = s.get(Push, push_id)
            conn = (
                s.get(OrgConnection, push.org_connection_id)
                if push and push.org_connection_id
                else None
            )
            if push is not None and conn is not None:
                target.append((conn.name, push.sobject_type))
    for org_name, sobject in target:
        web().describes.rules(org_name, sobject)


def misfit(
    org: str, sobject: str, record: dict[str, Any], inputs: dict[str, str]
) -> tuple[str, list[str]] | None:
    """(message, input fields) naming each value the org's fields cannot take, or None."""
    rules = web().describes.cached(org, sobject)
    found = fit.misfits(sobject, record, rules) if rules else []
    if not found:
        return None
    message = "; ".join(f"{inputs.get(m.field, m.field)}: {m.message}" for m in found)
    return message, [inputs.get(m.field, m.field) for m in found]
