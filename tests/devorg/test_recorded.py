"""Conformance: requests recorded against real Salesforce orgs, replayed against the local org.

`recorded/*.json` holds request/response pairs taken from public recordings (CumulusCI's VCR
cassettes); each case names its repository, file and commit. A replay must answer with the
recorded status and the recorded shape: the same keys, the same JSON types, and the same
values where a value is part of the contract (error codes, statuses, object types, messages).
Record ids, dates and counts differ by nature and are compared by type only; a null in a
recording (data the recorded org happened to lack) matches anything. What the local org leaves
out on purpose is listed in DIFFERENCES and explained in docs/devorg.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.devorg.state import LATEST_API_VERSION
from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

RECORDED = Path(__file__).parent / "recorded"
CASES = [
    case for f in sorted(RECORDED.glob("*.json")) for case in json.loads(f.read_text())["cases"]
]

# Values that are part of the contract: compared exactly, not just by type.
EXACT = {
    "errorCode", "statusCode", "httpStatusCode", "success", "created", "done", "hasErrors",
    "type", "referenceId", "message", "soapType", "name", "encoding", "maxBatchSize", "value",
    "restrictedPicklist", "nillable", "createable", "updateable", "defaultedOnCreate",
}  # fmt: skip
# Lists matched element by element through these keys (else by position, lengths equal).
LIST_KEYS = [("name",), ("childSObject", "field"), ("value",), ("referenceId",)]

# (case name, path in the response) the local org does not reproduce, on purpose.
DIFFERENCES = {
    # compound address fields are not modelled in REST (docs/devorg.md, "What is simplified")
    ("GET sobjects/Organization/{id}", "body.Address: missing"),
    # the recording is of a trial (scratch) org; the local org is a Developer Edition, no trial
    ("GET sobjects/Organization/{id}", "body.TrialExpirationDate: str recorded, NoneType answered"),
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _key(item: Any, keys: tuple[str, ...]) -> Any:
    return tuple(item.get(k) for k in keys) if isinstance(item, dict) else None


def shape_differences(recorded: Any, actual: Any, path: str = "body") -> list[str]:
    out: list[str] = []
    if recorded is None:
        return out
    if _kind(recorded) != _kind(actual):
        return [f"{path}: {_kind(recorded)} recorded, {_kind(actual)} answered"]
    if isinstance(recorded, dict):
        out += [f"{path}.{k}: missing" for k in sorted(recorded.keys() - actual.keys())]
        out += [f"{path}.{k}: extra" for k in sorted(actual.keys() - recorded.keys())]
        for k in sorted(recorded.keys() & actual.keys()):
            rv, av = recorded[k], actual[k]
            inner = shape_differences(rv, av, f"{path}.{k}")
            if not inner and k in EXACT and rv is not None and not isinstance(rv, dict | list):
                inner = [f"{path}.{k}: {rv!r} recorded, {av!r} answered"] if rv != av else []
            out += inner
    elif isinstance(recorded, list):
        keys = next(
            (ks for ks in LIST_KEYS if recorded and all(
                isinstance(r, dict) and all(k in r for k in ks) for r in recorded)),
            None,
        )  # fmt: skip
        if keys is not None:
            by_key = {_key(a, keys): a for a in actual}
            for r in recorded:
                found = by_key.get(_key(r, keys))
                if found is None:
                    out.append(f"{path}[{'/'.join(map(str, _key(r, keys)))}]: missing")
                else:
                    out += shape_differences(
                        r, found, f"{path}[{'/'.join(map(str, _key(r, keys)))}]"
                    )
        else:
            if len(recorded) != len(actual):
                out.append(f"{path}: {len(recorded)} items recorded, {len(actual)} answered")
            for n, (r, a) in enumerate(zip(recorded, actual, strict=False)):
                out += shape_differences(r, a, f"{path}[{n}]")
    return out


def _fill(value: Any, names: dict[str, str]) -> Any:
    text = json.dumps(value)
    for placeholder, real in names.items():
        text = text.replace(placeholder, real)
    return json.loads(text)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_replay_matches_the_recording(clean_devorg: DevOrg, case: dict[str, Any]) -> None:
    source = case["source"]
    assert source["repository"] and source["path"] and len(source["commit"]) == 40
    http = clean_devorg.session()
    http.headers["Authorization"] = "Bearer " + clean_devorg.token("sales")["access_token"]
    base = clean_devorg.base_url
    names = {"vxx.0": f"v{LATEST_API_VERSION}", "{org_id}": clean_devorg.info["org_id"]}
    for n, record in enumerate(case.get("setup", [])):
        made = http.post(
            f"{base}/services/data/v{LATEST_API_VERSION}/sobjects/{record['sobject']}",
            json=record["fields"],
            timeout=10,
        )
        assert made.status_code == 201, made.text
        names[f"{{setup:{n}}}"] = made.json()["id"]
    problems = []
    for step, pair in enumerate(case["interactions"]):
        request = _fill(pair["request"], names)
        answer = http.request(
            request["method"], base + request["url"], json=request.get("body"), timeout=10
        )
        recorded = pair["response"]
        label = f"step {step} {request['method']} {request['url']}"
        if answer.status_code != recorded["status"]:
            problems.append(f"{label}: status {recorded['status']} recorded, "
                            f"{answer.status_code} answered: {answer.text[:300]}")  # fmt: skip
            continue
        body = answer.json() if answer.content else None
        for problem in shape_differences(recorded["body"], body):
            if (case["name"], problem) not in DIFFERENCES:
                problems.append(f"{label}: {problem}")
    assert not problems, "\n".join(problems)


def test_shape_comparison_catches_what_it_should() -> None:
    recorded = {"records": [{"attributes": {"type": "Account"}, "Id": "001x", "n": 1}],
                "done": True, "gone": None}  # fmt: skip
    same = {"records": [{"attributes": {"type": "Account"}, "Id": "001y", "n": 2.5}],
            "done": True, "gone": "anything"}  # fmt: skip
    assert shape_differences(recorded, same) == []
    wrong = {"records": [{"attributes": {"type": "Contact"}, "Id": 5}], "done": "yes", "x": 1}
    assert shape_differences(recorded, wrong) == [
        "body.gone: missing",
        "body.x: extra",
        "body.done: boolean recorded, str answered",
        "body.records[0].n: missing",
        "body.records[0].Id: str recorded, number answered",
        "body.records[0].attributes.type: 'Account' recorded, 'Contact' answered",
    ]
