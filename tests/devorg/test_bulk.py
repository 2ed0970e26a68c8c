"""Bulk API 2.0 of the local org: unmodified simple-salesforce `bulk2`, and the raw protocol
(job states, CSV formats, result resources, errors) with `requests`, against a real devorg."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import requests
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceOperationError

from bridge.devorg import ids
from bridge.devorg.bulk import java_double
from bridge.devorg.testing import DevOrg
from tests.devorg.test_streaming_e2e import Bayeux
from tests.services import wait_for

pytestmark = pytest.mark.e2e

WAIT = 0.02  # simple-salesforce's first poll delay (its default is 5 s)


def rows(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


class Jobs:
    """The Bulk API 2.0 resources over plain requests, as the sales user."""

    def __init__(self, org: DevOrg, user: str = "sales") -> None:
        self.http = org.session()
        self.base = f"{org.base_url}/services/data/v{org.info['api_version']}/jobs"
        self.token = org.token(user)["access_token"]

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.http.request(
            method, f"{self.base}/{path}", headers=headers, timeout=10, **kwargs
        )

    def create(self, **body: Any) -> dict[str, Any]:
        r = self.call("POST", "ingest", json={"contentType": "CSV", **body})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def upload(self, job_id: str, data: str | bytes) -> requests.Response:
        raw = data.encode() if isinstance(data, str) else data
        return self.call(
            "PUT", f"ingest/{job_id}/batches", data=raw, headers={"Content-Type": "text/csv"}
        )

    def state(self, job_id: str, state: str, kind: str = "ingest") -> requests.Response:
        return self.call("PATCH", f"{kind}/{job_id}", json={"state": state})

    def info(self, job_id: str, kind: str = "ingest") -> dict[str, Any]:
        r = self.call("GET", f"{kind}/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def finished(self, job_id: str, kind: str = "ingest") -> dict[str, Any]:
        return dict(
            wait_for(
                lambda: (
                    (i := self.info(job_id, kind))["state"] in ("JobComplete", "Failed", "Aborted")
                    and i
                ),
                what=f"job {job_id} to finish",
            )
        )

    def run(self, csv_text: str, **body: Any) -> dict[str, Any]:
        job = self.create(**body)
        assert self.upload(job["id"], csv_text).status_code == 201
        assert self.state(job["id"], "UploadComplete").status_code == 200
        return self.finished(job["id"])

    def results(self, job_id: str, which: str) -> str:
        r = self.call("GET", f"ingest/{job_id}/{which}")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), r.text
        return r.content.decode("utf-8")


def error(response: requests.Response) -> tuple[int, str, str]:
    (body,) = response.json()
    return response.status_code, body["errorCode"], body["message"]


# ---- simple-salesforce bulk2, unmodified ----------------------------------------------------


def test_simple_salesforce_bulk2_insert_with_good_and_bad_rows(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("sales")
    records = [
        {"LastName": "Good", "Company": "Acme", "Email": "good@acme.example"},
        {"LastName": "", "Company": "NoName", "Email": "noname@acme.example"},
        {"LastName": "Bad", "Company": "Acme", "Email": "not-an-email"},
    ]
    (result,) = sf.bulk2.Lead.insert(records=records, wait=WAIT)
    assert result["numberRecordsProcessed"] == 3 and result["numberRecordsFailed"] == 2

    job_id = result["job_id"]
    assert job_id.startswith("750")
    (ok,) = rows(sf.bulk2.Lead.get_successful_records(job_id))
    assert ok["sf__Created"] == "true" and ok["Email"] == "good@acme.example"
    lead = sf.Lead.get(ok["sf__Id"])  # a real record, written through the REST DML path
    assert lead["LastName"] == "Good" and lead["CreatedById"] == clean_devorg.user("sales")["id"]

    failed = {r["Email"]: r for r in rows(sf.bulk2.Lead.get_failed_records(job_id))}
    assert failed["noname@acme.example"]["sf__Error"] == (
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    )
    assert failed["not-an-email"]["sf__Error"] == (
        "INVALID_EMAIL_ADDRESS:Email: invalid email address: not-an-email:Email --"
    )
    assert all(r["sf__Id"] == "" for r in failed.values())
    assert rows(sf.bulk2.Lead.get_unprocessed_records(job_id)) == []
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 1


def test_simple_salesforce_bulk2_upsert_update_delete_and_query(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("sales")
    existing = sf.Lead.create({"LastName": "Old", "Company": "A", "Referral_ID__c": "ref_1"})["id"]
    upsert = [
        {"Referral_ID__c": "REF_1", "LastName": "Renamed", "Company": "A"},  # case-insensitive
        {"Referral_ID__c": "ref_2", "LastName": "New", "Company": "B"},
    ]
    (result,) = sf.bulk2.Lead.upsert(records=upsert, external_id_field="Referral_ID__c", wait=WAIT)
    assert result["numberRecordsFailed"] == 0
    done = {
        r["Referral_ID__c"]: r for r in rows(sf.bulk2.Lead.get_successful_records(result["job_id"]))
    }
    assert done["REF_1"]["sf__Id"] == existing and done["REF_1"]["sf__Created"] == "false"
    assert done["ref_2"]["sf__Created"] == "true"
    assert sf.Lead.get(existing)["LastName"] == "Renamed"

    new_id = done["ref_2"]["sf__Id"]
    nobody = ids.make_id("00Q", 42)
    (updated,) = sf.bulk2.Lead.update(
        records=[{"Id": new_id, "Title": "CTO"}, {"Id": nobody, "Title": "x"}],
        wait=WAIT,
    )
    assert updated["numberRecordsFailed"] == 1
    (missing,) = rows(sf.bulk2.Lead.get_failed_records(updated["job_id"]))
    assert missing["sf__Id"] == nobody
    assert missing["sf__Error"].startswith("NOT_FOUND:")
    assert sf.Lead.get(new_id)["Title"] == "CTO"

    pages = list(
        sf.bulk2.Lead.query(
            "SELECT Id, LastName, Title FROM Lead ORDER BY LastName", max_records=1, wait=WAIT
        )
    )
    assert [[r["LastName"] for r in rows(p)] for p in pages] == [["New"], ["Renamed"]]

    (deleted,) = sf.bulk2.Lead.delete(records=[{"Id": existing}], wait=WAIT)
    assert deleted["numberRecordsFailed"] == 0
    live = "".join(sf.bulk2.Lead.query("SELECT Id FROM Lead", wait=WAIT))
    assert [r["Id"] for r in rows(live)] == [new_id]
    everything = "".join(sf.bulk2.Lead.query_all("SELECT Id, IsDeleted FROM Lead", wait=WAIT))
    assert {r["Id"]: r["IsDeleted"] for r in rows(everything)} == {
        new_id: "false",
        existing: "true",
    }


def test_simple_salesforce_reports_a_failed_job(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("sales")
    with pytest.raises(SalesforceOperationError, match="Field name not found : Nickname__c"):
        sf.bulk2.Lead.insert(
            records=[{"LastName": "A", "Company": "B", "Nickname__c": "x"}], wait=WAIT
        )
    with pytest.raises(SalesforceMalformedRequest) as refused:
        list(sf.bulk2.Lead.query("SELECT Nope FROM Lead", wait=WAIT))
    assert refused.value.content[0]["errorCode"] == "INVALID_FIELD"


# ---- the protocol --------------------------------------------------------------------------


def test_job_lifecycle_info_and_call_accounting(clean_devorg: DevOrg) -> None:
    jobs = Jobs(clean_devorg)
    created = jobs.create(object="Lead", operation="insert", lineEnding="LF")
    job_id = created["id"]
    assert created["state"] == "Open" and created["object"] == "Lead"
    assert created["createdById"] == clean_devorg.user("sales")["id"]
    assert created["contentUrl"] == f"services/data/v63.0/jobs/ingest/{job_id}/batches"
    assert created["columnDelimiter"] == "COMMA" and created["apiVersion"] == 63.0
    assert created["createdDate"].endswith("+0000")

    assert jobs.upload(job_id, "LastName,Company\nA,B\nC,D\n").status_code == 201
    closed = jobs.state(job_id, "UploadComplete")
    assert closed.status_code == 200 and closed.json()["state"] == "UploadComplete"
    assert "contentUrl" not in closed.json()
    info = jobs.finished(job_id)
    assert info["state"] == "JobComplete" and info["jobType"] == "V2Ingest"
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (2, 0)
    assert "errorMessage" not in info

    listed = jobs.call("GET", "ingest").json()
    assert listed["done"] is True and [j["id"] for j in listed["records"]] == [job_id]

    # A finished job cannot be closed, aborted or uploaded to again.
    assert error(jobs.state(job_id, "Aborted"))[:2] == (400, "INVALIDJOBSTATE")
    assert error(jobs.upload(job_id, "LastName\nX\n"))[:2] == (400, "INVALIDJOBSTATE")
    assert jobs.call("DELETE", f"ingest/{job_id}").status_code == 204
    assert error(jobs.call("GET", f"ingest/{job_id}"))[:2] == (404, "NOT_FOUND")

    r = jobs.call("GET", "ingest")
    assert r.headers["Sforce-Limit-Info"].startswith("api-usage=")
    stats = clean_devorg.control("stats", method="GET")["api_calls"]["by_endpoint"]
    assert stats["POST jobs/ingest"] == 1 and stats["PUT jobs/ingest/{id}/batches"] == 2
    assert stats["PATCH jobs/ingest/{id}"] == 2 and stats["DELETE jobs/ingest/{id}"] == 1


def test_a_header_that_names_no_field_fails_the_job_and_leaves_rows_unprocessed(
    clean_devorg: DevOrg,
) -> None:
    jobs = Jobs(clean_devorg)
    info = jobs.run("LastName,Company,Shoe_Size__c\nA,B,44\n", object="Lead", operation="insert")
    assert info["state"] == "Failed"
    assert info["errorMessage"] == "InvalidBatch : Field name not found : Shoe_Size__c"
    assert info["numberRecordsProcessed"] == 0
    (left,) = rows(jobs.results(info["id"], "unprocessedrecords"))
    assert left == {"LastName": "A", "Company": "B", "Shoe_Size__c": "44"}
    assert rows(jobs.results(info["id"], "failedResults")) == []


def test_one_upload_per_job_and_the_upload_size_limit(clean_devorg: DevOrg) -> None:
    jobs = Jobs(clean_devorg)
    job = jobs.create(object="Lead", operation="insert")
    assert jobs.upload(job["id"], "LastName,Company\nA,B\n").status_code == 201
    assert jobs.upload(job["id"], "LastName,Company\nC,D\n").status_code == 201
    status, code, message = error(jobs.state(job["id"], "UploadComplete"))
    assert (status, code) == (400, "INVALIDJOB")
    assert "make sure you only do 'PUT' once on a given Job" in message
    assert jobs.state(job["id"], "Aborted").json()["state"] == "Aborted"

    empty = jobs.create(object="Lead", operation="insert")
    assert error(jobs.state(empty["id"], "UploadComplete"))[:2] == (400, "INVALIDJOB")

    clean_devorg.control("bulk", {"max_upload_base64": 40})  # 30 raw bytes
    big = jobs.create(object="Lead", operation="insert")
    status, code, message = error(jobs.upload(big["id"], "LastName,Company\n" + "A,B\n" * 10))
    assert (status, code) == (400, "INVALIDBATCH") and "exceeds 40 bytes" in message
    assert jobs.upload(big["id"], "LastName,Company\nA,B\n").status_code == 201


def test_job_creation_errors(clean_devorg: DevOrg) -> None:
    jobs = Jobs(clean_devorg)

    def refused(**body: Any) -> tuple[int, str, str]:
        return error(jobs.call("POST", "ingest", json=body))

    assert refused(object="Lead", operation="merge")[:2] == (400, "JSON_PARSER_ERROR")
    assert refused(object="Widget__c", operation="insert")[:2] == (400, "INVALIDENTITY")
    status, code, message = refused(object="Lead", operation="hardDelete")
    assert (status, code) == (400, "FEATURENOTENABLED") and "special user" in message
    assert refused(object="Lead", operation="upsert")[:2] == (400, "INVALIDJOB")
    assert (
        "not an External ID"
        in refused(object="Lead", operation="upsert", externalIdFieldName="LastName")[2]
    )
    assert refused(object="Lead", operation="insert", lineEnding="CR")[:2] == (
        400,
        "JSON_PARSER_ERROR",
    )
    assert refused(object="Lead", operation="insert", contentType="JSON")[:2] == (
        400,
        "INVALIDJOB",
    )
    old = jobs.http.post(
        f"{clean_devorg.base_url}/services/data/v40.0/jobs/ingest",
        json={"object": "Lead", "operation": "insert"},
        headers={"Authorization": f"Bearer {jobs.token}"},
    )
    assert old.status_code == 404  # Bulk API 2.0 starts at 41.0
    anonymous = jobs.http.get(f"{jobs.base}/ingest", headers={"Authorization": "Bearer nope"})
    assert error(anonymous)[:2] == (401, "INVALID_SESSION_ID")


def test_csv_formats_nulls_and_relationship_columns(clean_devorg: DevOrg) -> None:
    jobs = Jobs(clean_devorg)
    sales = clean_devorg.user("sales")
    # PIPE delimiter, CRLF line endings, a quoted value with the delimiter and a line break.
    data = (
        "LastName|Company|Description|Owner:User.Username\r\n"
        f'Pipe|"A|B"|"two\r\nlines"|{sales["username"]}\r\n'
    )
    info = jobs.run(data, object="Lead", operation="insert", columnDelimiter="PIPE",
                    lineEnding="CRLF")  # fmt: skip
    assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0
    text = jobs.results(info["id"], "successfulResults")
    assert text.startswith('"sf__Id"|"sf__Created"|"LastName"|') and text.endswith("\r\n")
    (ok,) = rows(text, "|")
    sf = clean_devorg.sf("sales")
    lead = sf.Lead.get(ok["sf__Id"])
    assert (lead["Company"], lead["Description"]) == ("A|B", "two\r\nlines")
    assert lead["OwnerId"] == sales["id"]

    # An empty value leaves a field alone; #N/A sets it to null.
    update = f"Id,Title,Description\n{ok['sf__Id']},,#N/A\n"
    sf.Lead.update(ok["sf__Id"], {"Title": "Keep"})
    assert jobs.run(update, object="Lead", operation="update")["numberRecordsFailed"] == 0
    lead = sf.Lead.get(ok["sf__Id"])
    assert lead["Title"] == "Keep" and lead["Description"] is None

    # The line ending named at creation must be the data's.
    wrong = jobs.run("LastName,Company\r\nA,B\r\n", object="Lead", operation="insert")
    assert wrong["state"] == "Failed"
    assert wrong["errorMessage"] == (
        "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"
    )


def test_abort_while_in_progress_leaves_the_rest_unprocessed(clean_devorg: DevOrg) -> None:
    jobs = Jobs(clean_devorg)
    clean_devorg.control("bulk", {"chunk_delay_ms": 1000})
    data = "LastName,Company\n" + "".join(f"L{n},C\n" for n in range(450))
    job = jobs.create(object="Lead", operation="insert")
    jobs.upload(job["id"], data)
    jobs.state(job["id"], "UploadComplete")
    wait_for(lambda: jobs.info(job["id"])["numberRecordsProcessed"] >= 200, what="first chunk")
    assert jobs.state(job["id"], "Aborted").json()["state"] == "Aborted"
    clean_devorg.control("bulk", {"chunk_delay_ms": 0})
    info = jobs.info(job["id"])
    done = info["numberRecordsProcessed"]
    assert info["state"] == "Aborted" and 200 <= done < 450
    ok = rows(jobs.results(job["id"], "successfulResults"))
    left = rows(jobs.results(job["id"], "unprocessedrecords"))
    assert len(ok) == done and len(ok) + len(left) == 450
    assert {r["LastName"] for r in ok} | {r["LastName"] for r in left} == {
        f"L{n}" for n in range(450)
    }
    assert clean_devorg.sf("sales").query("SELECT COUNT() FROM Lead")["totalSize"] == done


def test_query_job_csv_paging_and_errors(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("sales")
    account = sf.Account.create({"Name": "Acme", "AnnualRevenue": 15000000})["id"]
    sf.Contact.create({"LastName": "Zed", "AccountId": account, "Email": "z@acme.example"})
    sf.Contact.create({"LastName": "Amy"})
    jobs = Jobs(clean_devorg)
    r = jobs.call(
        "POST", "query",
        json={"operation": "query", "query": "SELECT LastName, Email, Account.Name, "
              "Account.AnnualRevenue, HasOptedOutOfEmail, CreatedDate FROM Contact ORDER BY "
              "LastName"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["state"] == "UploadComplete" and created["object"] == "Contact"
    info = jobs.finished(created["id"], "query")
    assert info["jobType"] == "V2Query" and info["numberRecordsProcessed"] == 2

    first = jobs.call("GET", f"query/{created['id']}/results", params={"maxRecords": 1})
    assert first.headers["Sforce-NumberOfRecords"] == "1"
    locator = first.headers["Sforce-Locator"]
    assert locator not in ("", "null")
    (amy,) = rows(first.text)
    assert list(amy) == ["LastName", "Email", "Account.Name", "Account.AnnualRevenue",
                         "HasOptedOutOfEmail", "CreatedDate"]  # fmt: skip
    assert amy["Email"] == "" and amy["Account.Name"] == "" and amy["HasOptedOutOfEmail"] == "false"
    assert amy["CreatedDate"].endswith("Z") and "T" in amy["CreatedDate"]
    rest = jobs.call(
        "GET", f"query/{created['id']}/results", params={"locator": locator, "maxRecords": 5}
    )
    assert rest.headers["Sforce-Locator"] == "null"
    (zed,) = rows(rest.text)
    assert (zed["Account.Name"], zed["Account.AnnualRevenue"]) == ("Acme", "1.5E7")

    bad = jobs.call("GET", f"query/{created['id']}/results", params={"locator": "bm9wZQ"})
    assert error(bad)[:2] == (400, "INVALIDLOCATOR")
    sub = jobs.call(
        "POST", "query",
        json={"operation": "query", "query": "SELECT Name, (SELECT LastName FROM Contacts) "
              "FROM Account"},
    )  # fmt: skip
    assert error(sub) == (
        400,
        "API_ERROR",
        "Aggregate Relationships not supported in Bulk V2 Query with CSV content type",
    )
    count = jobs.call(
        "POST", "query", json={"operation": "query", "query": "SELECT COUNT() FROM Lead"}
    )
    assert error(count)[:2] == (400, "API_ERROR")


@pytest.mark.parametrize(
    ("value", "text"),
    [(100.0, "100.0"), (15000000.0, "1.5E7"), (0.5, "0.5"), (1234567.25, "1234567.25"),
     (0.0001, "1.0E-4"), (-2.5e10, "-2.5E10"), (0.0, "0.0")],
)  # fmt: skip
def test_doubles_are_written_as_salesforce_writes_them(value: float, text: str) -> None:
    assert java_double(value) == text


def test_bulk_changes_reach_change_data_capture_but_no_pushtopic(clean_devorg: DevOrg) -> None:
    clean_devorg.control("streaming", {"connect_timeout_ms": 2000})
    try:
        integration = clean_devorg.sf("integration")
        integration.PushTopic.create(
            {"Name": "BulkLeads", "Query": "SELECT Id, Email FROM Lead", "ApiVersion": 63.0,
             "NotifyForFields": "Referenced"}
        )  # fmt: skip
        bayeux = Bayeux(clean_devorg).start("/topic/BulkLeads", "/data/LeadChangeEvent")
        sf = clean_devorg.sf("sales")
        sf.bulk2.Lead.insert(
            records=[{"LastName": "Bulk", "Company": "B", "Email": "bulk@x.example"}], wait=WAIT
        )
        sf.Lead.create({"LastName": "Rest", "Company": "R", "Email": "rest@x.example"})

        def topic_events(events: list[dict[str, Any]]) -> list[str]:
            return [e["data"]["sobject"]["Email"] for e in events
                    if e["channel"] == "/topic/BulkLeads"]  # fmt: skip

        events = bayeux.collect(
            lambda evs: topic_events(evs) and len(evs) >= 3  # the REST one on both channels
        )
        assert topic_events(events) == ["rest@x.example"]
        origins = {
            e["data"]["payload"]["Email"]: e["data"]["payload"]["ChangeEventHeader"]["changeOrigin"]
            for e in events
            if e["channel"] == "/data/LeadChangeEvent"
        }
        assert origins == {
            "bulk@x.example": "com/salesforce/api/bulkapi/63.0",
            "rest@x.example": "com/salesforce/api/rest/63.0",
        }
    finally:
        clean_devorg.control(
            "streaming", {"connect_timeout_ms": 110_000, "client_timeout_ms": 40_000}
        )
