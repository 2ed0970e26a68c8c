"""What a preflight check reports: one finding per subject, Ok or Issue with the reason an
admin can act on (`sfbridge org check`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["Ok", "Issue"]


@dataclass(frozen=True)
class Finding:
    check: str
    subject: str
    status: Status
    reason: str


def ok(check: str, subject: str, reason: str = "") -> Finding:
    return Finding(check, subject, "Ok", reason)


def issue(check: str, subject: str, reason: str) -> Finding:
    return Finding(check, subject, "Issue", reason)
