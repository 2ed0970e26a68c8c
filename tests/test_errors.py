"""The one failure policy (`failure_of`): what every job path does with an exception."""

from __future__ import annotations

import logging

import pytest

from bridge.errors import (
    Action,
    BridgeError,
    ConfigError,
    PermanentError,
    TransientError,
    UsageError,
    failure_of,
)
from bridge.salesforce.errors import make_error


@pytest.mark.parametrize(
    ("exc", "action", "code", "error_class"),
    [
        (TransientError("org unreachable"), Action.RETRY, "transient_error", "transient"),
        (make_error("UNABLE_TO_LOCK_ROW", "locked", status=400), Action.RETRY,
         "UNABLE_TO_LOCK_ROW", "transient"),
        (UsageError("connect the org", code="org_not_connected"), Action.FAIL,
         "org_not_connected", "usage"),
        (ConfigError("bad config"), Action.FAIL, "config_error", "usage"),
        (make_error("INSUFFICIENT_ACCESS", "no access", status=403), Action.FAIL,
         "INSUFFICIENT_ACCESS", "usage"),
        (make_error("STRING_TOO_LONG", "too long", status=400), Action.FAIL,
         "STRING_TOO_LONG", "permanent"),
        (PermanentError("bad record", code="bad"), Action.FAIL, "bad", "permanent"),
        (BridgeError("something", code="odd"), Action.FAIL, "odd", "permanent"),
        (KeyError("Status"), Action.RAISE, "internal_error", "permanent"),
    ],
)  # fmt: skip
def test_each_kind_of_error_gets_its_action_and_reason(
    exc: Exception, action: Action, code: str, error_class: str
) -> None:
    failure = failure_of(exc)
    assert (failure.action, failure.code, failure.error_class) == (action, code, error_class)


def test_a_bridge_error_keeps_its_message_and_fields() -> None:
    failure = failure_of(PermanentError("LastName too long", code="STRING_TOO_LONG",
                                        fields=["LastName"]))  # fmt: skip
    assert failure.message == "LastName too long" and failure.fields == ("LastName",)


def test_a_path_that_must_not_lose_its_item_saves_the_unexpected_as_permanent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise ValueError("unexpected answer")
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger="bridge.errors"):
            failure = failure_of(exc, unexpected="lookup_error", doing="reading the records")
    assert (failure.action, failure.code, failure.error_class) == (
        Action.FAIL,
        "lookup_error",
        "permanent",
    )
    assert failure.message == "reading the records failed: ValueError: unexpected answer"
    # A bug saved as data is still shown to whoever reads the logs, with its traceback.
    assert caplog.records and caplog.records[0].exc_info is not None


def test_the_unexpected_code_does_not_change_what_the_bridge_knows() -> None:
    transient = failure_of(TransientError("down"), unexpected="lookup_error")
    assert transient.action is Action.RETRY and transient.code == "transient_error"
    usage = failure_of(UsageError("fix it", code="x"), unexpected="receiver_error")
    assert usage.action is Action.FAIL and usage.code == "x"
