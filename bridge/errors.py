"""Errors split by who can fix them.

UsageError: the user can fix it (bad config, bad input, wrong credentials).
TransientError: try again later (network, 5xx, locked row, limits).
PermanentError: retrying will not help; save the item with its reason for a human.
"""

from __future__ import annotations


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
