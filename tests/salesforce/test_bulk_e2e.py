"""The bridge's Bulk API 2.0 client against a real local org: every row's result on its row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.devorg import ids
from bridge.devorg.testing import DevOrg
from bridge.salesforce.bulk import BulkWriter, PollPolicy
from bridge.salesforce.connection import OrgCredentials, SalesforceOrg, connect
from bridge.writeback.client import record_error

pytestmark = pytest.mark.e2e

FAST = PollPolicy(first=0.02, factor=1.5, longest=0.2, timeout=30)


@pytest.fixture
def org(clean_devorg: DevOrg) -> Iterator[SalesforceOrg]:
    info = clean_devorg.info
    connected = connect(
        OrgCredentials(
            login_url=info["login_url"],
            client_id=info["client_id"],
            username=info["users"]["integration"]["username"],
            private_key_pem=Path(info["jwt_private_key_path"]).read_text(),
            ca_bundle=info["ca_path"],
            api_version=info["api_version"],
        )
    )
    yield connected
    connected.close()


def calls(devorg: DevOrg, prefix: str = "") -> dict[str, int]:
    stats = devorg.control("stats", method="GET")["api_calls"]["by_user_endpoint"]
    mine = stats.get(devorg.user("integration")["username"], {})
    return {k: v for k, v in mine.items() if k.split(" ", 1)[1].startswith(prefix)}


def codes(results: list[dict[str, Any]]) -> list[str | None]:
    return [None if r["success"] else r["errors"][0]["statusCode"] for r in results]


def test_insert_puts_each_result_on_its_row(clean_devorg: DevOrg, org: SalesforceOrg) -> None:
    records: list[dict[str, Any]] = []
    for n in range(450):  # three chunks of the org's processing, bad rows in between
        if n % 7 == 3:
            records.append({"LastName": f"Row {n}", "Company": "Acme", "Email": f"bad {n}"})
        elif n % 11 == 5:
            records.append({"LastName": None, "Company": "Acme", "Email": f"r{n}@x.example"})
        else:
            records.append({"LastName": f"Row {n}", "Company": "Acme", "Email": f"r{n}@x.example"})
    results = BulkWriter(org, poll=FAST).write("Lead", "insert", records)

    assert len(results) == len(records)
    sales = clean_devorg.sf("sales")
    stored = {
        r["Id"]: r for r in sales.query_all("SELECT Id, LastName, Email FROM Lead")["records"]
    }
    for n, (record, result) in enumerate(zip(records, results, strict=True)):
        if n % 7 == 3:
            assert not result["success"]
            err = record_error(result)
            assert (err.code, err.fields, err.error_class) == (
                "INVALID_EMAIL_ADDRESS", ["Email"], "permanent",
            )  # fmt: skip
            assert f"bad {n}" in err.message
        elif n % 11 == 5:
            assert record_error(result).code == "REQUIRED_FIELD_MISSING"
        else:
            assert result["success"] and result["errors"] == []
            assert stored[result["id"]]["Email"] == record["Email"]  # the row's own record
    assert len(stored) == sum(r["success"] for r in results)
    made = calls(clean_devorg, "jobs/")
    assert made["POST jobs/ingest"] == 1 and made["PUT jobs/ingest/{id}/batches"] == 1
    assert made["GET jobs/ingest/{id}/successfulResults"] == 1
    assert made["GET jobs/ingest/{id}/failedResults"] == 1
    assert "GET jobs/ingest/{id}/unprocessedrecords" not in made  # all were processed


def test_upsert_update_and_delete_with_mixed_rows(clean_devorg: DevOrg, org: SalesforceOrg) -> None:
    sales = clean_devorg.sf("sales")
    old = sales.Lead.create({"LastName": "Old", "Company": "A", "Referral_ID__c": "ref_old"})["id"]
    writer = BulkWriter(org, poll=FAST)
    upserted = writer.write(
        "Lead",
        "upsert",
        [
            {"Referral_ID__c": "ref_new", "LastName": "New", "Company": "B"},
            {"Referral_ID__c": "ref_old", "Title": "Updated"},
            {"Referral_ID__c": "ref_bad", "LastName": "X" * 81, "Company": "C"},
            {"LastName": "No key", "Company": "D"},
        ],
        external_id_field="Referral_ID__c",
    )
    assert codes(upserted) == [None, None, "STRING_TOO_LONG", "MISSING_ARGUMENT"]
    assert upserted[0]["created"] is True and upserted[1] == {
        "id": old, "success": True, "errors": [], "created": False,
    }  # fmt: skip
    assert sales.Lead.get(old)["Title"] == "Updated"
    new = upserted[0]["id"]

    nobody = ids.make_id("00Q", 4242)
    updated = writer.write(
        "Lead",
        "update",
        [
            {"Id": nobody, "Title": "x"},
            {"Id": new, "Email": "not an email"},
            {"Id": old, "Title": None, "Phone": "555"},  # None nulls Title
        ],
    )
    assert codes(updated) == ["NOT_FOUND", "INVALID_EMAIL_ADDRESS", None]
    assert updated[0]["id"] == nobody and updated[2]["id"] == old
    lead = sales.Lead.get(old)
    assert lead["Title"] is None and lead["Phone"] == "555"

    deleted = writer.write("Lead", "delete", [{"Id": "not-an-id"}, {"Id": new}, {"Id": new}])
    assert codes(deleted) == ["MALFORMED_ID", None, "ENTITY_IS_DELETED"]  # the repeat: next job
    assert deleted[1] == {"id": new, "success": True, "errors": []}
    assert calls(clean_devorg)["POST jobs/ingest"] == 4  # upsert, update, delete twice


def test_identical_rows_get_their_own_results(clean_devorg: DevOrg, org: SalesforceOrg) -> None:
    same = {"LastName": "Twin", "Company": "Acme"}
    results = BulkWriter(org, poll=FAST).write("Lead", "insert", [same, dict(same), same])
    assert all(r["success"] for r in results)
    assert len({r["id"] for r in results}) == 3
    assert calls(clean_devorg)["POST jobs/ingest"] == 3


def test_uploads_are_split_at_the_size_limit(clean_devorg: DevOrg, org: SalesforceOrg) -> None:
    clean_devorg.control("bulk", {"max_upload_base64": 4000})  # the org refuses more
    records = [{"LastName": f"Person {n:04d}", "Company": "Acme Corporation"} for n in range(300)]
    results = BulkWriter(org, poll=FAST, max_upload_bytes=3000).write("Lead", "insert", records)
    assert all(r["success"] for r in results), codes(results)
    made = calls(clean_devorg)
    assert (
        made["POST jobs/ingest"] == made["PUT jobs/ingest/{id}/batches"] == 3
    )  # 8.7 kB in 3 kB parts
    names = {
        r["Id"]: r["LastName"]
        for r in clean_devorg.sf("sales").query_all("SELECT Id, LastName FROM Lead")["records"]
    }
    assert [names[r["id"]] for r in results] == [r["LastName"] for r in records]

    refused = BulkWriter(org, poll=FAST).write(
        "Lead", "insert", records
    )  # one upload over the limit
    assert {(r["errors"][0]["statusCode"]) for r in refused} == {"INVALIDBATCH"}
    assert len(names) == 300  # nothing more was written


def test_a_job_that_fails_as_a_whole(clean_devorg: DevOrg, org: SalesforceOrg) -> None:
    results = BulkWriter(org, poll=FAST).write(
        "Lead", "insert", [{"LastName": "A", "Company": "B", "Shoe_Size__c": 44}] * 2
    )
    for result in results:
        err = record_error(result)
        assert (err.code, err.fields, err.error_class) == (
            "INVALID_FIELD", ["Shoe_Size__c"], "permanent",
        )  # fmt: skip
        assert "Field name not found : Shoe_Size__c" in err.message
    assert clean_devorg.sf("sales").query("SELECT COUNT() FROM Lead")["totalSize"] == 0

    unknown = BulkWriter(org, poll=FAST).write("Widget__c", "insert", [{"Name": "x"}])
    err = record_error(unknown[0])
    assert (err.code, err.error_class) == ("INVALIDENTITY", "usage")


def test_a_job_still_running_at_the_timeout_is_aborted(
    clean_devorg: DevOrg, org: SalesforceOrg
) -> None:
    clean_devorg.control("bulk", {"processing_delay_ms": 3000})
    patient = PollPolicy(first=0.05, factor=2, longest=0.1, timeout=0.3)
    results = BulkWriter(org, poll=patient).write(
        "Lead",
        "insert",
        [{"LastName": "Late", "Company": "A"}, {"LastName": "Later", "Company": "B"}],
    )
    for result in results:
        err = record_error(result)
        assert (err.code, err.error_class) == ("BULK_JOB_ABORTED", "transient")
    jobs = clean_devorg.control("bulk", method="GET")["jobs"]
    assert jobs == {"Aborted": 1}
    assert calls(clean_devorg)["PATCH jobs/ingest/{id}"] == 2  # closed, then aborted
    assert clean_devorg.sf("sales").query("SELECT COUNT() FROM Lead")["totalSize"] == 0
