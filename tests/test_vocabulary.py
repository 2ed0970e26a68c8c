"""The domain's fixed lists reach every place that shows or checks them unchanged: the OpenAPI
document, the config model, the API's query filters, the CLI's choices (the review UI's lists:
tests/web/test_review.py)."""

from __future__ import annotations

from typing import Any, get_args

import click
import pytest

from bridge import vocabulary as v
from bridge.cli import main
from bridge.config import FieldMapping, ObjectSync, StatusRule, Writeback
from bridge.web.bodies import ActivityIn, EntryIn
from bridge.web.openapi import document
from bridge.web.words import WAITING_OUTCOMES
from bridge.writeback.activities import DEFAULTS as ACTIVITY_DEFAULTS


def _param(op: dict[str, Any], name: str) -> list[str]:
    return next(p["schema"]["enum"] for p in op["parameters"] if p["name"] == name)


def test_the_openapi_enums_are_the_vocabulary() -> None:
    doc = document()
    schemas, paths = doc["components"]["schemas"], doc["paths"]
    assert schemas["Referral"]["properties"]["status"]["enum"] == list(v.REFERRAL_STATUSES)
    assert schemas["Entry"]["properties"]["outcome"]["enum"] == list(v.ENTRY_OUTCOMES)
    assert schemas["Entry"]["properties"]["source"]["enum"] == list(v.ENTRY_SOURCES)
    assert schemas["Push"]["properties"]["kind"]["enum"] == list(v.PUSH_KINDS)
    assert schemas["Push"]["properties"]["state"]["enum"] == list(v.PUSH_STATES)
    assert _param(paths["/referrals"]["get"], "status") == list(v.REFERRAL_STATUSES)
    assert _param(paths["/entries"]["get"], "outcome") == list(v.ENTRY_OUTCOMES)
    assert _param(paths["/entries"]["get"], "sobject_type") == list(v.STREAMED_OBJECTS)
    assert _param(paths["/pushes"]["get"], "state") == list(v.PUSH_STATES)
    assert _param(paths["/pushes"]["get"], "kind") == list(v.PUSH_KINDS)
    assert schemas["ActivityIn"]["properties"]["kind"]["enum"] == list(v.ACTIVITY_KINDS)
    assert schemas["EntryIn"]["properties"]["sobject_type"]["enum"] == list(v.STREAMED_OBJECTS)
    assert schemas["EntryIn"]["properties"]["change_type"]["enum"] == list(v.CHANGE_TYPES)
    for scope in v.SCOPES:
        assert scope in doc["info"]["description"]


@pytest.mark.parametrize(
    ("model", "name", "values"),
    [
        (StatusRule, "status", v.REFERRAL_STATUSES),
        (StatusRule, "object", v.STREAMED_OBJECTS),
        (StatusRule, "op", v.RULE_OPS),
        (FieldMapping, "sync", v.SYNC_RULES),
        (FieldMapping, "strategy", v.SYNC_STRATEGIES),
        (ObjectSync, "sync_mode", v.SYNC_MODES),
        (ActivityIn, "kind", v.ACTIVITY_KINDS),
        (EntryIn, "change_type", v.CHANGE_TYPES),
    ],
)
def test_models_accept_exactly_the_vocabulary(model: Any, name: str, values: tuple[str]) -> None:
    assert get_args(model.model_fields[name].annotation) == values


def test_config_objects_and_activity_kinds_are_the_vocabulary() -> None:
    assert get_args(get_args(Writeback.model_fields["objects"].annotation)[0]) == (
        v.STREAMED_OBJECTS
    )
    assert tuple(ACTIVITY_DEFAULTS) == v.ACTIVITY_KINDS  # every kind has its Task/Event default


def test_derived_lists_agree_with_their_sources() -> None:
    assert tuple(v.KEY_PREFIXES.values()) == v.STREAMED_OBJECTS
    assert tuple(v.TOPIC_NAMES) == v.STREAMED_OBJECTS
    assert all(len(name) <= 25 for name in v.TOPIC_NAMES.values())  # PushTopic.Name limit
    assert set(v.READ_SYNC_RULES) < set(v.SYNC_RULES)
    assert set(v.OPEN_OUTCOMES) < set(v.ENTRY_OUTCOMES)
    assert set(v.REPUSHABLE) < set(v.PUSH_STATES)
    assert set(v.REFERRAL_STATUSES) > v.QUALIFYING and set(v.SCOPES) > v.ADMIN_SCOPES
    assert set(WAITING_OUTCOMES) == set(v.ENTRY_OUTCOMES)  # the entry page explains each one
    assert (v.ReplayFrom.NEW_EVENTS, v.ReplayFrom.ALL_RETAINED) == (-1, -2)  # Salesforce's


def _choices(*path: str, option: str) -> list[str]:
    command: Any = main
    for name in path:
        command = command.commands[name]
    param = next(p for p in command.params if p.name == option)
    assert isinstance(param.type, click.Choice)
    return list(param.type.choices)


def test_cli_choices_are_the_vocabulary() -> None:
    assert _choices("users", "add", option="role") == list(v.ROLES)
    assert _choices("poll", option="objects") == list(v.STREAMED_OBJECTS)
