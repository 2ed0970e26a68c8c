"""Property-based tests (Hypothesis) over the API's request models, on SQLite and PostgreSQL.

Any JSON body — of the model's shape with hostile values in it, or of no shape at all — is
answered with a success or a 4xx JSON error, never a 5xx; what a model accepts dumps to
strict JSON (no NaN, no Infinity) and fits the columns it is stored in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.store import Store
from bridge.vocabulary import SCOPES, STREAMED_OBJECTS
from bridge.web import bodies
from tests.web.seed import seed, token

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)

# Text with what breaks databases and parsers: NUL, surrogates are not JSON-encodable so
# they are left out, long runs, control characters.
hostile_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=400),
    st.sampled_from(["\x00", "a\x00b", " ", "", "00Q000000000ZZZAAA", "x" * 19, "Infinity"]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
json_values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=20,
)


def record(sobject_values: Any) -> Any:
    return st.fixed_dictionaries(
        {"Id": st.one_of(hostile_text, numbers, st.lists(hostile_text, max_size=2))},
        optional={
            "SystemModstamp": st.one_of(hostile_text, numbers),
            "Company": hostile_text,
            "Email": hostile_text,
            "LastName": hostile_text,
            "Referral_Code__c": st.sampled_from(["ALICE", "nope"]),
            "Status": st.sampled_from(["Open", "Qualified"]),
        },
    ).flatmap(
        lambda base: st.dictionaries(hostile_text, sobject_values, max_size=3).map(
            lambda extra: {**extra, **base}
        )
    )


BODIES: dict[str, Any] = {
    "/entries": st.fixed_dictionaries(
        {
            "org": st.sampled_from(["acme", "nope"]),
            "sobject_type": st.sampled_from([*STREAMED_OBJECTS, "Task"]),
            "record": record(json_values),
        },
        optional={
            "related": st.dictionaries(st.sampled_from(STREAMED_OBJECTS), json_values),
            "previous": st.dictionaries(hostile_text, json_values, max_size=3),
        },
    ),
    "/referrals": st.fixed_dictionaries(
        {"program": st.sampled_from(["main", "nope"]), "last_name": hostile_text},
        optional={
            "email": hostile_text,
            "company": hostile_text,
            "phone": hostile_text,
            "external_id": hostile_text,
            "member": st.dictionaries(
                st.sampled_from(["id", "external_id", "referral_code", "email"]),
                st.one_of(hostile_text, numbers),
                max_size=2,
            ),
            "fields": st.dictionaries(hostile_text, json_values, max_size=3),
        },
    ),
    "/members": st.fixed_dictionaries(
        {"program": st.sampled_from(["main", "nope"]), "name": hostile_text},
        optional={
            "email": hostile_text,
            "referral_code": hostile_text,
            "url": hostile_text,
            "external_id": hostile_text,
        },
    ),
    "/activities": st.fixed_dictionaries(
        {
            "org": st.just("acme"),
            "activity_id": hostile_text,
            "kind": st.sampled_from(["call", "email", "meeting", "fax"]),
            "subject": hostile_text,
            "occurred_at": st.one_of(hostile_text, st.just("2026-01-01T10:00:00Z")),
        },
        optional={
            "referral_id": numbers,
            "duration_minutes": numbers,
            "who_email": hostile_text,
        },
    ),
}


@pytest.fixture
def client(store: Store, app_factory: Callable[..., Flask]) -> Any:
    seeded = seed(store)
    app = app_factory(store)
    headers = {"Authorization": f"Bearer {token(store, list(SCOPES))}"}
    return app.test_client(), headers, seeded


def _post(client: Any, headers: dict[str, str], path: str, body: Any) -> Any:
    # allow_nan: send what a careless client would; the API must refuse it.
    raw = json.dumps(body, allow_nan=True)
    return client.post(
        "/api/v1" + path,
        data=raw,
        headers={**headers, "Content-Type": "application/json"},
    )


def _assert_answered(resp: Any) -> None:
    assert resp.status_code < 500, resp.get_data(as_text=True)[:500]
    body = json.loads(resp.get_data(as_text=True))  # strict: NaN/Infinity would fail here
    if resp.status_code >= 400:
        assert body["error"]["code"] and body["error"]["message"]


@pytest.mark.parametrize("path", sorted(BODIES))
def test_shaped_bodies_with_hostile_values_never_get_a_5xx(client: Any, path: str) -> None:
    test_client, headers, _seeded = client

    @given(body=BODIES[path])
    @SETTINGS
    def run(body: Any) -> None:
        _assert_answered(_post(test_client, headers, path, body))

    run()
    # every list that could now hold what was stored is still strict JSON
    for listing in ("/entries", "/referrals", "/pushes"):
        _assert_answered(test_client.get("/api/v1" + listing + "?limit=200", headers=headers))


def test_any_json_on_the_entry_actions_never_gets_a_5xx(client: Any) -> None:
    test_client, headers, seeded = client
    eid = seeded.ids["review_fuzzy"]
    paths = [
        f"/entries/{eid}/retry",
        f"/entries/{eid}/reject",
        f"/entries/{eid}/approve",
        f"/pushes/{seeded.ids['push_failed']}/repush",
    ]

    @given(path=st.sampled_from(paths), body=json_values)
    @SETTINGS
    def run(path: str, body: Any) -> None:
        _assert_answered(_post(test_client, headers, path, body))
        resp = test_client.patch(
            f"/api/v1/entries/{eid}",
            data=json.dumps({"fields": body}, allow_nan=True),
            headers={**headers, "Content-Type": "application/json"},
        )
        _assert_answered(resp)

    run()


@pytest.mark.parametrize("name", sorted(bodies.REQUEST_MODELS))
def test_what_a_model_accepts_is_strict_json(name: str) -> None:
    model = bodies.REQUEST_MODELS[name]

    @given(data=st.dictionaries(hostile_text, json_values, max_size=6))
    @SETTINGS
    def run(data: Any) -> None:
        try:
            accepted = model.model_validate(data)
        except ValidationError:
            return
        json.dumps(accepted.model_dump(mode="json"), allow_nan=False)

    run()
