"""Connect or create: which Salesforce Account and Contact a sale belongs to. Pure.

Sellfire's cascade, step by step, so a sale joins the records that already exist instead of
duplicating them:

Account
  1. The sale's primary phone against ``Account.Phone``.
  2. Phone matched: narrow by business name against ``Account.Name`` — one → connect; several →
     narrow by city (``BillingCity``): one → connect, several or none → create; no name → create.
  3. No phone match: the business name against ``Account.Name`` — one → connect; several →
     narrow by city as above; none → create.

Contact (under the Account the first cascade chose)
  1. The person's phone against ``Contact.Phone``.
  2. Phone matched: narrow by last name — one → connect; several or none → create.
  3. No phone match: the last name against the Account's contacts — one → connect; several or
     none → create.

Phones are compared as numbers (``phonenumbers``, E.164 in a configurable default region), so
``(415) 555-0100`` and ``+1 415 555 0100`` are the same phone; names and cities are compared
folded (case, accents, punctuation and legal forms such as "Inc" do not count). Each step keeps
the candidates it saw, so the push can say why a record was connected or created. The caller
queries Salesforce for the candidates (accounts whose phone or name could match, contacts of
the account) and passes them in; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers

from bridge.matchkeys import company_key, fold, phone_key

Record = Mapping[str, Any]
Action = Literal["connect", "create"]

DEFAULT_REGION = "US"


def phone_number(value: Any, region: str = DEFAULT_REGION) -> str | None:
    """A phone as E.164 (``+14155550100``), or its last ten digits when it cannot be parsed."""
    if value is None or not str(value).strip():
        return None
    try:
        parsed = phonenumbers.parse(str(value), region)
    except phonenumbers.NumberParseException:
        return phone_key(value)
    if not phonenumbers.is_possible_number(parsed):
        return phone_key(value)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class Step:
    """One narrowing step: what was compared, with which value, and the ids that passed."""

    by: str  # "phone", "name", "city", "last_name"
    value: str | None
    matched: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"by": self.by, "value": self.value, "matched": list(self.matched)}


@dataclass(frozen=True)
class Outcome:
    action: Action
    record_id: str | None  # the connected record; None when one is to be created
    reason: str  # in words, for the push's report
    steps: tuple[Step, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "record_id": self.record_id,
            "reason": self.reason,
            "steps": [s.as_dict() for s in self.steps],
        }


def _narrow(
    records: Sequence[Record], by: str, value: str | None, key: Callable[[Any], str | None],
    field: str,
) -> tuple[list[Record], Step]:  # fmt: skip
    wanted = key(value) if value is not None else None
    kept = [r for r in records if wanted is not None and key(r.get(field)) == wanted]
    return kept, Step(by, value, tuple(str(r.get("Id")) for r in kept))


def _decide(kind: str, kept: list[Record], steps: list[Step], create_why: str) -> Outcome:
    if len(kept) == 1:
        step = steps[-1]
        return Outcome("connect", str(kept[0]["Id"]), f"one {kind} by {step.by}", tuple(steps))
    return Outcome("create", None, create_why, tuple(steps))


def _folded(value: Any) -> str | None:
    return fold(value) or None


def _phone_then_name(
    candidates: Sequence[Record], phone: str | None, region: str,
    by: str, name: str | None, key: Callable[[Any], str | None], field: str, kind: str,
) -> tuple[list[Record], list[Step], str]:  # fmt: skip
    """The first two steps both cascades take: the phone, then a name among the phone's
    matches (or among all candidates when no phone matched)."""
    by_phone, phone_step = _narrow(candidates, "phone", phone, lambda v: phone_number(v, region),
                                   "Phone")  # fmt: skip
    kept, name_step = _narrow(by_phone or candidates, by, name, key, field)
    where = "with this phone" if by_phone else f"(no {kind} has this phone)"
    return kept, [phone_step, name_step], where


def account(
    *,
    business_name: str | None,
    phone: str | None,
    city: str | None,
    candidates: Sequence[Record],
    region: str = DEFAULT_REGION,
) -> Outcome:
    """Connect to one of `candidates` (Accounts with Id, Name, Phone, BillingCity) or create."""
    by_name, steps, where = _phone_then_name(
        candidates, phone, region, "name", business_name, company_key, "Name", "account"
    )
    if not by_name:
        return Outcome("create", None, f"no account named so {where}", tuple(steps))
    if len(by_name) == 1:
        return _decide("account", by_name, steps, "")
    by_city, step = _narrow(by_name, "city", city, _folded, "BillingCity")
    steps.append(step)
    many = "several accounts in this city" if by_city else "none of them in this city"
    return _decide("account", by_city, steps, f"{len(by_name)} accounts named so {where}, {many}")


def contact(
    *,
    last_name: str | None,
    phone: str | None,
    candidates: Sequence[Record],
    region: str = DEFAULT_REGION,
) -> Outcome:
    """Connect to one of the Account's `candidates` (Contacts: Id, LastName, Phone) or create."""
    by_last, steps, where = _phone_then_name(
        candidates, phone, region, "last_name", last_name, _folded, "LastName", "contact"
    )
    many = f"{len(by_last)} contacts" if by_last else "no contact"
    return _decide("contact", by_last, steps, f"{many} of that last name {where}")
