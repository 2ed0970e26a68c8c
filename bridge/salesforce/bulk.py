"""Bulk API 2.0 writes: many records in a few calls, one result per input row in input order.

`BulkWriter(org).write(sobject, operation, records, external_id_field=None)` returns, for each
record, the shape an sObject Collections result has (``bridge.writeback.client``): ``{"id",
"success": True, "errors": []}`` (plus ``"created"`` for upserts), or ``{"success": False,
"errors": [{"statusCode", "message", "fields"}]}`` whose code classifies with the connection's
table (``bridge.salesforce.errors``) like any record error. It never raises for Salesforce's
answers: a job that fails, is aborted or cannot be read turns into errors on its rows.

How (Bulk API 2.0 and Bulk API Developer Guide):

- One job per upload: Salesforce takes one ``PUT …/batches`` per job ("Found multipe contents
  for job" otherwise) of at most 150 MB base64 encoded, so CSV parts of `max_upload_bytes`
  (100 MB, the guide's advice) each get their own job. All parts are submitted (create, upload,
  close) before any is polled.
- Polling backs off (`PollPolicy`); a job still running at the timeout is aborted, and its
  rows without a result come back as ``BULK_JOB_ABORTED`` (transient: send them again).
- Rows are matched to results by their own values: the result files carry the uploaded
  columns, in any order. A job never holds two identical rows (a repeated row goes to the next
  job), so the match is exact; a row with no result at all is ``BULK_RESULT_MISSING``.
- CSV: an absent key leaves the field alone (an empty value); ``None`` or ``""`` sets it to
  null (``#N/A``), as JSON null does; a parent by external id ``{"Account": {"Ext__c": "x"}}``
  becomes the column ``Account.Ext__c``.

As with collections, a row whose result is lost after Salesforce applied it (the network failed
while reading results) comes back as a transient error: upserts and updates repeat harmlessly;
a plain insert could create a duplicate.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from bridge.errors import BridgeError

log = logging.getLogger(__name__)

Operation = Literal["insert", "update", "upsert", "delete"]
OPERATIONS: tuple[str, ...] = ("insert", "update", "upsert", "delete")

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
"""CSV bytes per job: 150 MB once base64 encoded is Salesforce's limit; the guide says 100 MB."""
NULL_VALUE = "#N/A"
"""The CSV value that sets a field to null (an empty one leaves it alone)."""
FINISHED = ("JobComplete", "Failed", "Aborted")


@dataclass(frozen=True)
class PollPolicy:
    """How long to wait between job status checks, and for how long at most (seconds)."""

    first: float = 0.5
    factor: float = 1.5
    longest: float = 10.0
    timeout: float = 600.0

    def intervals(self) -> Iterator[float]:
        wait = self.first
        while True:
            yield wait
            wait = min(self.longest, wait * self.factor)


@dataclass
class _Part:
    """One job: the input rows it carries and what became of it."""

    indexes: list[int]
    data: bytes
    job_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    error: BridgeError | None = None  # submitting failed: nothing of this part was written
    poll_error: BridgeError | None = None  # the last status check failed


def _error(code: str, message: str, fields: Sequence[str] = ()) -> dict[str, Any]:
    return {"success": False, "errors": [{"statusCode": code, "message": message,
                                          "fields": list(fields)}]}  # fmt: skip


def parse_sf_error(text: str) -> list[dict[str, Any]]:
    """sf__Error (``CODE:message:Field1,Field2 --``, one per error) as collection errors."""
    errors = []
    pos = 0
    pattern = re.compile(r"\s*([A-Za-z_]+):(.*?):([A-Za-z0-9_.,]*) ?--", re.DOTALL)
    while pos < len(text):
        m = pattern.match(text, pos)
        if m is None:
            break
        code, message, fields = m.groups()
        errors.append({"statusCode": code, "message": message,
                       "fields": [f for f in fields.split(",") if f]})  # fmt: skip
        pos = m.end()
    if not errors:
        code, sep, message = text.partition(":")
        if not sep or not re.fullmatch(r"[A-Z_]+", code):
            code, message = "UNKNOWN_EXCEPTION", text
        errors.append({"statusCode": code, "message": message.strip() or text, "fields": []})
    return errors


def job_failure(info: Mapping[str, Any]) -> dict[str, Any]:
    """The error for a row a job left unprocessed, from the job's state and errorMessage."""
    state = info.get("state")
    message = str(info.get("errorMessage") or "")
    job = info.get("id")
    if state == "Aborted":
        return _error("BULK_JOB_ABORTED", f"not processed: Bulk API job {job} was aborted")
    if state != "Failed":
        return _error("BULK_RESULT_MISSING", f"Bulk API job {job} reported no result for it")
    missing = re.match(r"InvalidBatch\s*:\s*Field name not found\s*:\s*(\S+)", message)
    if missing:  # the org lacks a mapped field: the admin fixes the mapping or the org
        return _error("INVALID_FIELD", f"Bulk API job {job} failed: {message}", [missing[1]])
    if message.startswith(("InvalidBatch", "ClientInputError")):
        return _error("INVALIDBATCH", f"Bulk API job {job} failed: {message}")
    return _error("BULK_JOB_FAILED", f"Bulk API job {job} failed: {message or 'no reason'}")


def _cell(value: Any) -> str:
    """A value as Bulk API CSV takes it; null (None or "") as #N/A, as JSON null nulls it."""
    if value is None or value == "":
        return NULL_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)  # a multi-select picklist
    return str(value)


def _flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    """Columns of one record: a parent by external id becomes ``Rel.Field`` (``Rel:Type.F``)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, Mapping):
            attrs = value.get("attributes")
            rel = f"{key}:{attrs['type']}" if isinstance(attrs, Mapping) else key
            for sub, sub_value in value.items():
                if sub != "attributes":
                    out[f"{rel}.{sub}"] = sub_value
        else:
            out[key] = value
    return out


def _key(values: Sequence[str]) -> tuple[str, ...]:
    # Compare as Salesforce may echo them: line breaks and outer blanks are not significant.
    return tuple(v.replace("\r\n", "\n").strip() for v in values)


def _csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


class BulkWriter:
    """Bulk API 2.0 ingest on a connected org (`SalesforceOrg`: its session, token renewal and
    error classification through `org.request`)."""

    def __init__(
        self,
        org: Any,
        *,
        poll: PollPolicy | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.org = org
        self.poll = poll or PollPolicy()
        self.max_upload_bytes = max_upload_bytes
        self._sleep = sleep
        self._clock = clock

    # -- the one entry point ----------------------------------------------------------------

    def write(
        self,
        sobject: str,
        operation: str,
        records: Sequence[Mapping[str, Any]],
        *,
        external_id_field: str | None = None,
    ) -> list[dict[str, Any]]:
        """One result per record, in the order of `records` (see the module docstring)."""
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}: {operation}")
        if operation == "upsert" and not external_id_field:
            raise ValueError("an upsert needs external_id_field")
        if not records:
            return []
        columns, rows = self._table(operation, records)
        parts = self._parts(columns, rows)
        for part in parts:
            self._submit(sobject, operation, external_id_field, part)
        self._wait([p for p in parts if p.error is None])
        results: list[dict[str, Any] | None] = [None] * len(records)
        for part in parts:
            self._collect(part, columns, rows, results)
        return [r if r is not None else _error("BULK_RESULT_MISSING", "no result") for r in results]

    # -- building the CSV ------------------------------------------------------------------

    @staticmethod
    def _table(
        operation: str, records: Sequence[Mapping[str, Any]]
    ) -> tuple[list[str], list[list[str]]]:
        flat = [_flatten(r) for r in records]
        if operation == "delete":
            columns = ["Id"]
        else:
            seen: dict[str, str] = {}
            for record in flat:
                for name in record:
                    seen.setdefault(name.lower(), name)
            columns = list(seen.values())
        rows = []
        for record in flat:
            lowered = {k.lower(): v for k, v in record.items()}
            rows.append(
                [_cell(lowered[c.lower()]) if c.lower() in lowered else "" for c in columns]
            )
        return columns, rows

    def _parts(self, columns: list[str], rows: list[list[str]]) -> list[_Part]:
        """Jobs of at most `max_upload_bytes`, none holding the same row twice."""
        rounds: list[list[int]] = []
        used: list[set[tuple[str, ...]]] = []
        for index, row in enumerate(rows):
            key = _key(row)
            n = next((i for i, keys in enumerate(used) if key not in keys), len(rounds))
            if n == len(rounds):
                rounds.append([])
                used.append(set())
            rounds[n].append(index)
            used[n].add(key)
        header = _csv([columns])
        parts: list[_Part] = []
        for indexes in rounds:
            current: list[int] = []
            size = len(header)
            for index in indexes:
                line = _csv([rows[index]])
                if current and size + len(line) > self.max_upload_bytes:
                    parts.append(self._part(header, rows, current))
                    current, size = [], len(header)
                current.append(index)
                size += len(line)
            parts.append(self._part(header, rows, current))
        return parts

    @staticmethod
    def _part(header: bytes, rows: list[list[str]], indexes: list[int]) -> _Part:
        return _Part(list(indexes), header + _csv([rows[i] for i in indexes]))

    # -- the calls --------------------------------------------------------------------------

    def _submit(self, sobject: str, operation: str, external: str | None, part: _Part) -> None:
        """Create the job, upload its CSV, close it. A failure is kept on the part."""
        body: dict[str, Any] = {"object": sobject, "operation": operation,
                                "contentType": "CSV", "lineEnding": "LF",
                                "columnDelimiter": "COMMA"}  # fmt: skip
        if external:
            body["externalIdFieldName"] = external
        try:
            part.info = self.org.request("POST", "jobs/ingest", json=body).json()
            part.job_id = str(part.info["id"])
            self.org.request(
                "PUT", f"jobs/ingest/{part.job_id}/batches", data=part.data,
                headers={"Content-Type": "text/csv"},
            )  # fmt: skip
            part.info = self.org.request(
                "PATCH", f"jobs/ingest/{part.job_id}", json={"state": "UploadComplete"}
            ).json()
        except BridgeError as exc:
            part.error = exc
            if part.job_id is not None:
                self._abort(part)  # do not leave an open job behind

    def _wait(self, parts: list[_Part]) -> None:
        """Poll until every job has finished; abort those still running at the timeout."""
        deadline = self._clock() + self.poll.timeout
        pending = [p for p in parts if p.info.get("state") not in FINISHED]
        for interval in self.poll.intervals():
            if not pending:
                return
            left = deadline - self._clock()
            if left <= 0:
                break
            self._sleep(min(interval, left))
            for part in pending:
                self._refresh(part)
            pending = [p for p in pending if p.info.get("state") not in FINISHED]
        for part in pending:
            log.warning("Bulk API job %s still %s after %.0f s: aborting it", part.job_id,
                        part.info.get("state"), self.poll.timeout)  # fmt: skip
            self._abort(part)
            self._refresh(part)

    def _refresh(self, part: _Part) -> None:
        try:
            part.info = self.org.request("GET", f"jobs/ingest/{part.job_id}").json()
            part.poll_error = None
        except BridgeError as exc:  # a failed status check is retried at the next interval
            log.info("Bulk API job %s: status check failed: %s", part.job_id, exc)
            part.poll_error = exc

    def _abort(self, part: _Part) -> None:
        try:
            part.info = self.org.request(
                "PATCH", f"jobs/ingest/{part.job_id}", json={"state": "Aborted"}
            ).json()
        except BridgeError as exc:  # finished meanwhile, or unreachable: the refresh tells
            log.info("Bulk API job %s: abort failed: %s", part.job_id, exc)

    def _results(self, job_id: str, which: str) -> list[dict[str, str]]:
        response = self.org.request(
            "GET", f"jobs/ingest/{job_id}/{which}", headers={"Accept": "text/csv"}
        )
        text = response.content.decode("utf-8")
        return list(csv.DictReader(io.StringIO(text, newline="")))

    # -- results back onto rows --------------------------------------------------------------

    def _collect(
        self,
        part: _Part,
        columns: list[str],
        rows: list[list[str]],
        results: list[dict[str, Any] | None],
    ) -> None:
        state = part.info.get("state")
        unknown = part.error or (part.poll_error if state not in FINISHED else None)
        if unknown is not None:  # never submitted, or its outcome could not be learnt
            failure = _error(unknown.code, unknown.message, unknown.fields)
            for index in part.indexes:
                results[index] = failure
            return
        by_key = {_key(rows[i]): i for i in part.indexes}
        total = len(part.indexes)
        processed = int(part.info.get("numberRecordsProcessed") or 0)
        failed = int(part.info.get("numberRecordsFailed") or 0)
        wanted = []
        if processed - failed > 0:
            wanted.append("successfulResults")
        if failed > 0:
            wanted.append("failedResults")
        if state != "JobComplete" or processed < total:
            wanted.append("unprocessedrecords")
        try:
            for which in wanted:
                for row in self._results(str(part.job_id), which):
                    found = by_key.get(self._row_key(row, columns))
                    if found is None:
                        continue  # not one of ours (a value Salesforce echoed differently)
                    results[found] = self._result(which, row, part.info)
        except BridgeError as exc:
            failure = _error(exc.code, exc.message, exc.fields)
            for index in part.indexes:
                if results[index] is None:
                    results[index] = failure
            return
        for index in part.indexes:
            if results[index] is None:
                results[index] = job_failure(part.info)

    @staticmethod
    def _row_key(row: Mapping[str, str], columns: list[str]) -> tuple[str, ...]:
        lowered = {k.lower(): v for k, v in row.items() if k is not None}
        return _key([lowered.get(c.lower()) or "" for c in columns])

    @staticmethod
    def _result(which: str, row: Mapping[str, str], info: Mapping[str, Any]) -> dict[str, Any]:
        if which == "successfulResults":
            out: dict[str, Any] = {"id": row.get("sf__Id") or None, "success": True, "errors": []}
            if info.get("operation") == "upsert":
                out["created"] = row.get("sf__Created") == "true"
            return out
        if which == "failedResults":
            failure: dict[str, Any] = {
                "success": False,
                "errors": parse_sf_error(row.get("sf__Error") or ""),
            }
            if row.get("sf__Id"):  # fmt: skip
                failure = {"id": row["sf__Id"], **failure}
            return failure
        return job_failure(info)
