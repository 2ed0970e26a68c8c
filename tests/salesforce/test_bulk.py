"""Unit tests of the Bulk API 2.0 client's pure parts and of its polling, with a scripted org."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from bridge.salesforce.bulk import BulkWriter, PollPolicy, job_failure, parse_sf_error
from bridge.salesforce.errors import make_error
from bridge.writeback.client import record_error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --",
            [("REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ["LastName"])],
        ),
        (
            "DUPLICATE_VALUE:duplicate value found: Email duplicates value on record with id: "
            "00Q8d000015g3ytEAA:--",
            [("DUPLICATE_VALUE", "duplicate value found: Email duplicates value on record with "
              "id: 00Q8d000015g3ytEAA", [])],
        ),
        (
            "STRING_TOO_LONG:Last Name: data value too large: XX (max length=80):LastName --"
            "INVALID_EMAIL_ADDRESS:Email: invalid email address: x:Email --",
            [("STRING_TOO_LONG", "Last Name: data value too large: XX (max length=80)",
              ["LastName"]),
             ("INVALID_EMAIL_ADDRESS", "Email: invalid email address: x", ["Email"])],
        ),
        ("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--",
         [("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", [])]),
        ("something odd", [("UNKNOWN_EXCEPTION", "something odd", [])]),
    ],
)  # fmt: skip
def test_sf_error_is_parsed_into_collection_errors(text: str, expected: list[Any]) -> None:
    errors = parse_sf_error(text)
    assert [(e["statusCode"], e["message"], e["fields"]) for e in errors] == expected


@pytest.mark.parametrize(
    ("info", "code", "error_class", "fields"),
    [
        ({"state": "Failed", "errorMessage": "InvalidBatch : Field name not found : Foo__c"},
         "INVALID_FIELD", "permanent", ["Foo__c"]),
        ({"state": "Failed", "errorMessage": "ClientInputError : LineEnding is invalid on user "
          "data. Current LineEnding setting is LF"}, "INVALIDBATCH", "permanent", []),
        ({"state": "Failed", "errorMessage": "InternalServerError : retry limit reached"},
         "BULK_JOB_FAILED", "transient", []),
        ({"state": "Aborted"}, "BULK_JOB_ABORTED", "transient", []),
        ({"state": "JobComplete"}, "BULK_RESULT_MISSING", "transient", []),
    ],
)  # fmt: skip
def test_rows_a_job_left_are_classified_by_why(
    info: dict[str, Any], code: str, error_class: str, fields: list[str]
) -> None:
    err = record_error(job_failure({"id": "750x", **info}))
    assert (err.code, err.error_class, err.fields) == (code, error_class, fields)


def test_the_csv_nulls_values_and_names_parents_by_external_id() -> None:
    columns, rows = BulkWriter._table(
        "insert",
        [
            {"attributes": {"type": "Contact"}, "LastName": "A", "Email": None, "Title": ""},
            {"LastName": "B", "HasOptedOutOfEmail": True, "Account": {"Ext__c": "acme"},
             "Owner": {"attributes": {"type": "User"}, "Username": "u@x"}},
        ],
    )  # fmt: skip
    assert columns == [
        "LastName", "Email", "Title", "HasOptedOutOfEmail", "Account.Ext__c",
        "Owner:User.Username",
    ]  # fmt: skip
    assert rows == [["A", "#N/A", "#N/A", "", "", ""], ["B", "", "", "true", "acme", "u@x"]]
    assert BulkWriter._table("delete", [{"Id": "003x", "LastName": "ignored"}]) == (
        ["Id"],
        [["003x"]],
    )


def test_parts_never_repeat_a_row_and_respect_the_size_limit() -> None:
    rows = [["Ann"], ["Bob"], ["Ann"], ["Cyd"], ["Ann "], ["Dee"]]
    parts = BulkWriter(object(), max_upload_bytes=30)._parts(["LastName"], rows)
    # A repeated row (blanks aside) waits for a later job, so results match rows exactly.
    assert [p.indexes for p in parts] == [[0, 1, 3, 5], [2], [4]]
    assert parts[0].data == b"LastName\nAnn\nBob\nCyd\nDee\n"

    many = [[f"Person {n}"] for n in range(10)]  # 9 bytes each, 9 for the header
    split = BulkWriter(object(), max_upload_bytes=30)._parts(["LastName"], many)
    assert [p.indexes for p in split] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert all(len(p.data) <= 30 for p in split)


# ---- a scripted org ------------------------------------------------------------------------


class Response:
    def __init__(self, body: Any = None, text: str = "") -> None:
        self.body, self.content = body, text.encode("utf-8")

    def json(self) -> Any:
        return self.body


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows([header, *rows])
    return buffer.getvalue()


class ScriptedOrg:
    """Answers the Bulk API calls from a script; records every call."""

    def __init__(self, states: list[str], results: dict[str, str], fail: str | None = None):
        self.states = list(states)  # the state each status check reports
        self.results = results
        self.fail = fail
        self.calls: list[tuple[str, str]] = []
        self.uploaded = b""

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        self.calls.append((method, path))
        if self.fail and path.endswith(self.fail):
            raise make_error("SERVER_UNAVAILABLE", "down", status=503)
        if method == "POST":
            return Response(
                {"id": "750A", "state": "Open", **json.loads(json.dumps(kwargs["json"]))}
            )
        if method == "PUT":
            self.uploaded = kwargs["data"]
            return Response()
        if method == "PATCH":
            return Response({"id": "750A", "state": kwargs["json"]["state"]})
        which = path.rsplit("/", 1)[1]
        if which in self.results:
            return Response(text=self.results[which])
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return Response({"id": "750A", "state": state, "operation": "insert",
                         "numberRecordsProcessed": 3, "numberRecordsFailed": 1})  # fmt: skip


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_results_in_any_order_land_on_their_rows() -> None:
    header = ["sf__Id", "sf__Created", "LastName", "Email"]
    org = ScriptedOrg(
        ["InProgress", "JobComplete"],
        {
            "successfulResults": csv_text(
                header, [["00Q3", "true", "Cyd", "c@x"], ["00Q1", "true", "Ann", "a@x"]]
            ),
            "failedResults": csv_text(
                ["sf__Id", "sf__Error", "LastName", "Email"],
                [
                    [
                        "",
                        "INVALID_EMAIL_ADDRESS:Email: invalid email address: b:Email --",
                        "Bob",
                        "b",
                    ]
                ],
            ),
        },
    )
    clock = FakeTime()
    writer = BulkWriter(org, poll=PollPolicy(first=1, factor=2, longest=3, timeout=60),
                        sleep=clock.sleep, clock=lambda: clock.now)  # fmt: skip
    results = writer.write(
        "Lead",
        "insert",
        [{"LastName": "Ann", "Email": "a@x"}, {"LastName": "Bob", "Email": "b"},
         {"LastName": "Cyd", "Email": "c@x"}],
    )  # fmt: skip
    assert results[0] == {"id": "00Q1", "success": True, "errors": []}
    assert record_error(results[1]).code == "INVALID_EMAIL_ADDRESS"
    assert results[2]["id"] == "00Q3"
    assert clock.sleeps == [1, 2]  # polled until JobComplete, backing off
    assert org.uploaded == b"LastName,Email\nAnn,a@x\nBob,b\nCyd,c@x\n"
    assert ("GET", "jobs/ingest/750A/unprocessedrecords") not in org.calls


def test_polling_is_bounded_and_a_late_job_is_aborted() -> None:
    org = ScriptedOrg(["InProgress"] * 4 + ["Aborted"], {})
    clock = FakeTime()
    writer = BulkWriter(org, poll=PollPolicy(first=1, factor=2, longest=4, timeout=10),
                        sleep=clock.sleep, clock=lambda: clock.now)  # fmt: skip
    org.results["unprocessedrecords"] = csv_text(["LastName"], [["Ann"]])
    org.results["successfulResults"] = csv_text(["sf__Id", "sf__Created", "LastName"], [])
    org.results["failedResults"] = csv_text(["sf__Id", "sf__Error", "LastName"], [])
    (result,) = writer.write("Lead", "insert", [{"LastName": "Ann"}])
    assert clock.sleeps == [1, 2, 4, 3]  # the last wait is cut to the time left
    assert sum(clock.sleeps) == 10
    assert ("PATCH", "jobs/ingest/750A") in org.calls[-6:]  # the abort
    assert record_error(result).code == "BULK_JOB_ABORTED"


def test_a_failed_call_becomes_the_rows_error() -> None:
    org = ScriptedOrg(["JobComplete"], {}, fail="/batches")
    (result,) = BulkWriter(org).write("Lead", "insert", [{"LastName": "Ann"}])
    err = record_error(result)
    assert (err.code, err.error_class) == ("SERVER_UNAVAILABLE", "transient")
    assert org.calls[-1] == ("PATCH", "jobs/ingest/750A")  # the open job was aborted


def test_bad_arguments_are_refused() -> None:
    writer = BulkWriter(object())
    with pytest.raises(ValueError, match="external_id_field"):
        writer.write("Lead", "upsert", [{"LastName": "A"}])
    with pytest.raises(ValueError, match="operation"):
        writer.write("Lead", "merge", [{"LastName": "A"}])
    assert writer.write("Lead", "insert", []) == []
