"""The config of lead routing (`routing:`) and of the user mapping (`users:`), per org.

```yaml
users:                       # the bridge's reps -> Salesforce users
  alice: {email: alice@acme.example}     # resolved against active Users, in batches
  bob: {salesforce_id: 005000000000001AAA}
routing:
  minimum_score: two         # all | one | two | three (Signals' stars) or a number
  delay: 15m                 # seconds, or 90s / 15m / 2h / 1d
  campaign: {name: Partner referrals, status: Responded}   # or id: 701...
  lead_owner: {meeting: true, routed: true, closed: true, fallback: carol}
  account_rules:
    - name: enterprise
      segment: [{field: NumberOfEmployees, op: gte, value: 1000}]
      owner_field: OwnerId
      then_by: Secondary_Owner__c
      fallback: bob
  no_segment_fallback: carol
```

A fallback is a rep of `users:` or a Salesforce user id. Without `lead_owner` and
`account_rules` the bridge sets no owner (Salesforce's assignment applies), as before routing.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_USER_ID = re.compile(r"^005[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")
_CAMPAIGN_ID = re.compile(r"^701[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")
_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

STARS = {"all": 0, "one": 1, "two": 2, "three": 3}
"""Signals' star criteria as minimum scores (all: everyone is sent)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def is_user_id(value: str) -> bool:
    return bool(_USER_ID.match(value))


class RepUser(_Model):
    """One rep's Salesforce user: by id, or by email (resolved against active Users)."""

    salesforce_id: str | None = None
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

    @field_validator("salesforce_id")
    @classmethod
    def _user_id(cls, v: str | None) -> str | None:
        if v is not None and not is_user_id(v):
            raise ValueError(f"'{v}' is not a Salesforce user id (15 or 18 characters, 005...)")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> RepUser:
        if (self.salesforce_id is None) == (self.email is None):
            raise ValueError("give exactly one of salesforce_id or email")
        return self


class Campaign(_Model):
    id: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=80)
    status: str | None = None  # None: the campaign's default member status

    @field_validator("id")
    @classmethod
    def _campaign_id(cls, v: str | None) -> str | None:
        if v is not None and not _CAMPAIGN_ID.match(v):
            raise ValueError(f"'{v}' is not a Campaign id (15 or 18 characters, 701...)")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> Campaign:
        if (self.id is None) == (self.name is None):
            raise ValueError("give exactly one of id or name")
        return self


class LeadOwner(_Model):
    """Signals' order: meeting, then routed, then closed; each can be switched off."""

    meeting: bool = True
    routed: bool = True
    closed: bool = True
    fallback: str | None = None  # a rep or a Salesforce user id


class SegmentCondition(_Model):
    field: str
    op: Literal["equals", "not_equals", "in", "gte", "lt", "blank", "not_blank"]
    value: Any = None

    @field_validator("field")
    @classmethod
    def _plain(cls, v: str) -> str:
        if not _IDENT.match(v):
            raise ValueError(f"'{v}' is not an Account field name")
        return v

    @model_validator(mode="after")
    def _value_fits(self) -> SegmentCondition:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' needs a list value")
        if self.op in ("gte", "lt") and not isinstance(self.value, int | float):
            raise ValueError(f"op '{self.op}' needs a number value")
        return self


class AccountRule(_Model):
    name: str = Field(min_length=1)
    segment: list[SegmentCondition] = Field(default_factory=list)
    owner_field: str = "OwnerId"
    then_by: str | None = None
    fallback: str | None = None

    @field_validator("owner_field", "then_by")
    @classmethod
    def _plain(cls, v: str | None) -> str | None:
        if v is not None and not _IDENT.match(v):
            raise ValueError(f"'{v}' is not an Account field name")
        return v


class Routing(_Model):
    minimum_score: float = 0
    delay: timedelta = timedelta(0)
    campaign: Campaign | None = None
    lead_owner: LeadOwner | None = None
    account_rules: list[AccountRule] = Field(default_factory=list)
    no_segment_fallback: str | None = None

    @field_validator("minimum_score", mode="before")
    @classmethod
    def _stars(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in STARS:
            return STARS[v.strip().lower()]
        if isinstance(v, str):
            raise ValueError(f"'{v}' is not a score: all, one, two, three or a number")
        return v

    @field_validator("delay", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str):
            match = _DURATION.match(v.strip().lower())
            if not match:
                raise ValueError(f"'{v}' is not a delay: seconds, or e.g. 90s, 15m, 2h, 1d")
            return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
        return v

    @property
    def sets_owner(self) -> bool:
        return self.lead_owner is not None or bool(self.account_rules)

    def account_fields(self) -> list[str]:
        """The Account fields the rules read, for the batched Account lookup."""
        names: list[str] = []
        for rule in self.account_rules:
            for name in [c.field for c in rule.segment] + [rule.owner_field, rule.then_by]:
                if name and name not in names:
                    names.append(name)
        return names

    def fallbacks(self) -> list[str]:
        values = [self.lead_owner.fallback if self.lead_owner else None, self.no_segment_fallback]
        values += [r.fallback for r in self.account_rules]
        return [v for v in values if v]


def check_fallbacks(routing: Routing, users: dict[str, RepUser]) -> None:
    """A fallback names a rep of `users:` or a Salesforce user id."""
    for value in routing.fallbacks():
        if value not in users and not is_user_id(value):
            raise ValueError(
                f"routing fallback '{value}' is neither a rep under users: nor a Salesforce "
                "user id (005...)"
            )
