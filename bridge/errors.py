"""Errors split by who can fix them.

UsageError: the user can fix it (bad config, bad input, wrong credentials).
TransientError: try again later (network, 5xx, locked row, limits).
PermanentError: retrying will not help; save the item with its reason for a human.

`failure_of` turns any exception into the one decision every job path acts on (the shape of
Airbyte's Salesforce source `interpret_response`): retry, save as failed with a reason, or raise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

log = logging.getLogger(__name__)


class BridgeError(Exception):
    """Base for every error the bridge raises on purpose."""

    code = "bridge_error"

    def __init__(self, message: str, *, code: str | None = None, fields: list[str] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = list(fields or [])

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


class UsageError(BridgeError):
    """The user can fix it: bad config, bad input, wrong credentials, missing setup."""

    code = "usage_error"


class ConfigError(UsageError):
    """The config file or settings are invalid; carries every problem found."""

    code = "config_error"

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class TransientError(BridgeError):
    """Retrying later may succeed: network errors, 5xx, locked rows, request limits."""

    code = "transient_error"


class PermanentError(BridgeError):
    """Retrying will not help: save the item with this reason for a person to act on."""

    code = "permanent_error"


# ---- the one failure policy of every job path --------------------------------------------------

ErrorClass = Literal["usage", "transient", "permanent"]


class Action(StrEnum):
    """What a job does with a failure."""

    RETRY = "retry"
    """Transient: give the work back (rq retries the job; a push stays pending)."""
    FAIL = "fail"
    """Save the item as failed with the code and message, for a person to act on."""
    RAISE = "raise"
    """Not the bridge's to judge (a bug, an unforeseen answer): let it propagate."""


@dataclass(frozen=True)
class Failure:
    """A failure as a job acts on it: what to do, and the reason saved on the item."""

    action: Action
    code: str
    message: str
    error_class: ErrorClass
    fields: tuple[str, ...] = ()


def failure_of(
    exc: BaseException, *, unexpected: str | None = None, doing: str | None = None
) -> Failure:
    """Decide retry / save as failed / raise for `exc`, the same way on every job path (inbound
    related-record fetch and save, outbound login, routing and send).

    A `TransientError` is retried, any other `BridgeError` is saved with its own code and
    message (`UsageError`: the admin fixes it; else the data is wrong). Any other exception
    is raised, unless the path must never lose its item: then `unexpected` is the code it is
    saved under, as a `PermanentError` whose message says what was being done (`doing`) and
    what happened; it is logged with its traceback, since it is most likely a bug.
    """
    if isinstance(exc, TransientError):
        return Failure(Action.RETRY, exc.code, exc.message, "transient", tuple(exc.fields))
    if isinstance(exc, BridgeError):
        error_class: ErrorClass = "usage" if isinstance(exc, UsageError) else "permanent"
        return Failure(Action.FAIL, exc.code, exc.message, error_class, tuple(exc.fields))
    if unexpected is None:
        return Failure(Action.RAISE, "internal_error", _describe(exc), "permanent")
    what = f"{doing} failed: {_describe(exc)}" if doing else _describe(exc)
    log.error("%s (saved as %s)", what, unexpected, exc_info=exc)
    return failure_of(PermanentError(what, code=unexpected))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
