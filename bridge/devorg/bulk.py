"""Bulk API 2.0 of the local org: ingest jobs (insert, update, upsert, delete) and query jobs.

Follows the Bulk API 2.0 and Bulk API Developer Guide: create a job, upload its CSV once
(`PUT …/batches`), close it (`PATCH` state UploadComplete) or abort it, poll its state, read
successful / failed / unprocessed records; query jobs return CSV pages with `Sforce-Locator`.

Jobs are processed in the background after they are closed, row by row through the same DML
path as REST (`bridge.devorg.dml`: validation, error codes, ids), in transactions of 200 rows.
Every change is made with ``api="bulkapi"``: it reaches Change Data Capture (changeOrigin
``com/salesforce/api/bulkapi/…``) but no PushTopic, as in Salesforce. Jobs live in memory (a
restart forgets them, like query cursors). docs/devorg.md lists what is simplified.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.devorg import dml, ids
from bridge.devorg.dml import Ctx, DmlError, MultipleMatches
from bridge.devorg.query import QueryEngine
from bridge.devorg.soql import SoqlError
from bridge.devorg.state import API_VERSION, RecordChange, User

if TYPE_CHECKING:
    from bridge.devorg.schema import ObjectDef
    from bridge.devorg.server import DevOrgServer

log = logging.getLogger("bridge.devorg.bulk")

MIN_INGEST_VERSION = 41.0  # "available in API version 41.0 and later"
MIN_QUERY_VERSION = 47.0
MAX_UPLOAD_BASE64 = 150 * 1024 * 1024
"""An upload may carry at most 150 MB of base64 encoded content ("Upload Job Data")."""
CHUNK_ROWS = 200
"""Rows per transaction: Salesforce processes ingest data in chunks of 200 records."""
NULL_VALUE = "#N/A"
"""The CSV value that sets a field to null (an empty value leaves the field alone)."""

DELIMITERS = {
    "BACKQUOTE": "`",
    "CARET": "^",
    "COMMA": ",",
    "PIPE": "|",
    "SEMICOLON": ";",
    "TAB": "\t",
}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")
# Which states allow which job change (Close, Abort, Delete a Job).
CLOSABLE = ("Open",)
ABORTABLE = ("Open", "UploadComplete", "InProgress")
DELETABLE = ("UploadComplete", "JobComplete", "Aborted", "Failed")
_RESULTS = {n.lower(): n for n in ("successfulResults", "failedResults", "unprocessedrecords")}
_MULTIPLE_UPLOADS = (
    "Found multipe contents for job: <{id}>, please 'Close' / 'Abort' / 'Delete' the current "
    "Job then create a new Job and make sure you only do 'PUT' once on a given Job."
)  # Salesforce's own text, typo included


class BulkError(Exception):
    """A request the Bulk API refuses: HTTP status, errorCode, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class JobFailed(Exception):  # noqa: N818 - the job's outcome, not a bug
    """The job as a whole cannot be processed: its errorMessage."""


@dataclass
class Settings:
    """Knobs for tests (`POST /__devorg__/bulk`); real Salesforce has none of these."""

    processing_delay_ms: int = 0  # wait before a closed job starts (queue time)
    chunk_delay_ms: int = 0  # wait between chunks of 200 rows (a slow job)
    max_upload_base64: int = MAX_UPLOAD_BASE64

    def to_dict(self) -> dict[str, int]:
        return {
            "processing_delay_ms": self.processing_delay_ms,
            "chunk_delay_ms": self.chunk_delay_ms,
            "max_upload_base64": self.max_upload_base64,
        }


@dataclass
class Job:
    id: str
    kind: str  # "ingest" | "query"
    operation: str
    object: str
    user_id: str
    api_version: str
    line_ending: str
    column_delimiter: str
    created: datetime
    modstamp: datetime
    external_id_field: str | None = None
    assignment_rule_id: str | None = None
    query: str | None = None
    state: str = "Open"
    error_message: str | None = None
    uploads: list[bytes] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    next_row: int = 0  # rows before this one have a result
    successful: list[tuple[str, bool, list[str]]] = field(default_factory=list)
    failed: list[tuple[str, str, list[str]]] = field(default_factory=list)
    processing_ms: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def delimiter(self) -> str:
        return DELIMITERS[self.column_delimiter]

    @property
    def newline(self) -> str:
        return LINE_ENDINGS[self.line_ending]


def _sf_error(errors: list[dict[str, Any]]) -> str:
    """sf__Error as Salesforce writes it: ``CODE:message:Field1,Field2 --`` per error."""
    return "".join(
        f"{e.get('errorCode') or e.get('statusCode')}:{e.get('message', '')}:"
        f"{','.join(e.get('fields') or [])} --"
        for e in errors
    )


def java_double(value: float) -> str:
    """A double as Salesforce's CSV writes it (Java's Double.toString: 100.0, 1.5E7)."""
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(value)]
    if value == 0:
        return "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)  # Python's shortest round-trip digits, plain in this range
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{len(text) - 1 + exponent}"


def _csv_text(header: list[str], rows: list[list[str]], job: Job) -> str:
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=job.delimiter, lineterminator=job.newline, quoting=csv.QUOTE_ALL
    )
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def parse_csv(data: bytes, job: Job) -> tuple[list[str], list[list[str]]]:
    """The header and rows of an upload, or JobFailed with Salesforce's errorMessage."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobFailed(f"ClientInputError : the data is not UTF-8 ({exc.reason})") from None
    first_break = text.find("\n")
    crlf = first_break > 0 and text[first_break - 1] == "\r"
    if first_break >= 0 and crlf != (job.line_ending == "CRLF"):
        raise JobFailed(
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting "
            f"is {job.line_ending}"
        )
    try:
        parsed = [
            row for row in csv.reader(io.StringIO(text, newline=""), delimiter=job.delimiter) if row
        ]
    except csv.Error as exc:
        raise JobFailed(f"ClientInputError : the CSV data cannot be read ({exc})") from None
    if not parsed or not any(h.strip() for h in parsed[0]):
        raise JobFailed("InvalidBatch : the CSV data has no header row")
    header = [h.strip() for h in parsed[0]]
    seen: set[str] = set()
    for name in header:
        if name.lower() in seen:
            raise JobFailed(f"InvalidBatch : Duplicate field name : {name}")
        seen.add(name.lower())
    return header, parsed[1:]


class BulkApi:
    """The `/services/data/vXX.X/jobs/…` resources. Also a state listener, for `reset`."""

    def __init__(self, server: DevOrgServer) -> None:
        self.server = server
        self.state = server.state
        self.schema = server.schema
        self.queries = QueryEngine(server)
        self.jobs: dict[str, Job] = {}
        self.settings = Settings()
        R = re.compile  # noqa: N806
        self.routes: list[tuple[re.Pattern[str], dict[str, Callable[..., Any]], str]] = [
            (R(r"ingest/?"), {"POST": self.create_ingest, "GET": self.list_ingest}, "jobs/ingest"),
            (
                R(r"ingest/([^/]+)/?"),
                {"GET": self.get_job, "PATCH": self.change_state, "DELETE": self.delete_job},
                "jobs/ingest/{id}",
            ),
            (R(r"ingest/([^/]+)/batches/?"), {"PUT": self.upload}, "jobs/ingest/{id}/batches"),
            (
                R(r"ingest/([^/]+)/(successfulResults|failedResults|unprocessedrecords)/?", re.I),
                {"GET": self.ingest_results},
                "jobs/ingest/{id}/{results}",
            ),
            (R(r"query/?"), {"POST": self.create_query, "GET": self.list_query}, "jobs/query"),
            (
                R(r"query/([^/]+)/?"),
                {"GET": self.get_job, "PATCH": self.change_state, "DELETE": self.delete_job},
                "jobs/query/{id}",
            ),
            (R(r"query/([^/]+)/results/?"), {"GET": self.query_results}, "jobs/query/{id}/results"),
        ]

    # -- listener (the org's reset) ---------------------------------------------------------

    def record_changed(self, change: RecordChange) -> None:
        pass

    def reset(self) -> None:
        for job in self.jobs.values():
            if job.task is not None:
                job.task.cancel()
        self.jobs.clear()
        self.settings = Settings()

    # -- HTTP -------------------------------------------------------------------------------

    def _usage_header(self) -> dict[str, str]:
        return {
            "Sforce-Limit-Info": f"api-usage={self.state.api_usage}/{self.state.daily_api_limit}"
        }

    def _error(self, status: int, code: str, message: str) -> web.Response:
        return web.json_response(
            [{"errorCode": code, "message": message}], status=status, headers=self._usage_header()
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        tail = request.match_info["tail"]
        if not re.fullmatch(r"\d{2,3}\.\d", version) or not (
            MIN_INGEST_VERSION <= float(version) <= float(API_VERSION)
        ):
            return self._error(404, "NOT_FOUND", "The requested resource does not exist")
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        user = (
            self.state.user_for_token(token.strip())
            if scheme.lower() in ("bearer", "oauth")
            else None
        )
        if user is None:
            return self._error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if not self.state.count_api_call():
            return self._error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        for pattern, methods, name in self.routes:
            m = pattern.fullmatch(tail)
            if m is None:
                continue
            if "{results}" in name:  # the stats name each results resource
                name = name.replace("{results}", _RESULTS[m.group(2).lower()])
            self.state.stats.api_call(user.id, f"{request.method} {name}")
            handler = methods.get(request.method)
            if handler is None:
                allowed = ",".join(["HEAD", *methods])
                return self._error(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
                )
            try:
                response: web.StreamResponse = await handler(request, user, version, *m.groups())
            except BulkError as exc:
                return self._error(exc.status, exc.code, exc.message)
            except SoqlError as exc:
                return self._error(400, exc.code, exc.message)
            response.headers.update(self._usage_header())
            return response
        self.state.stats.api_call(user.id, f"{request.method} jobs/{tail}")
        return self._error(404, "NOT_FOUND", "The requested resource does not exist")

    async def _json(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise BulkError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None
        if not isinstance(body, dict):
            raise BulkError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        return body

    def _job(self, job_id: str, kind: str) -> Job:
        rid = ids.normalize(job_id)
        job = self.jobs.get(rid or "")
        if job is None or job.kind != kind:
            raise BulkError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    @staticmethod
    def _kind(request: web.Request) -> str:
        return "query" if request.match_info["tail"].startswith("query") else "ingest"

    # -- job info ---------------------------------------------------------------------------

    def info(self, job: Job, *, full: bool = True) -> dict[str, Any]:
        """JobInfo as Salesforce answers it (keys in its order)."""
        out: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.object,
            "createdById": job.user_id,
            "createdDate": dml.format_datetime(job.created),
            "systemModstamp": dml.format_datetime(job.modstamp),
            "state": job.state,
        }
        if job.external_id_field:
            out["externalIdFieldName"] = job.external_id_field
        if job.assignment_rule_id:
            out["assignmentRuleId"] = job.assignment_rule_id
        out.update(
            {
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float(job.api_version),
            }
        )
        if job.kind == "ingest" and job.state == "Open":
            out["contentUrl"] = f"services/data/v{job.api_version}/jobs/ingest/{job.id}/batches"
        out.update({"lineEnding": job.line_ending, "columnDelimiter": job.column_delimiter})
        out["jobType"] = "V2Query" if job.kind == "query" else "V2Ingest"
        if not full:  # the list's and the create / close answer's shape: no counters
            return out
        out["numberRecordsProcessed"] = len(job.rows) if job.kind == "query" else job.next_row
        if job.kind == "ingest":
            out["numberRecordsFailed"] = len(job.failed)
        out["retries"] = 0
        out["totalProcessingTime"] = job.processing_ms
        if job.kind == "ingest":
            out["apiActiveProcessingTime"] = job.processing_ms
            out["apexProcessingTime"] = 0
        else:
            out["isPkChunkingSupported"] = False
        if job.error_message:
            out["errorMessage"] = job.error_message
        return out

    def _new_job(self, kind: str, user: User, version: str, body: dict[str, Any]) -> Job:
        content_type = body.get("contentType", "CSV")
        if content_type != "CSV":
            raise BulkError(
                400,
                "INVALIDJOB",
                f"contentType {content_type} is not supported: Bulk API 2.0 accepts CSV only",
            )
        delimiter = body.get("columnDelimiter") or "COMMA"
        line_ending = body.get("lineEnding") or "LF"
        for name, value, allowed in (
            ("ColumnDelimiterEnum", delimiter, DELIMITERS),
            ("LineEndingEnum", line_ending, LINE_ENDINGS),
        ):
            if value not in allowed:
                raise _enum_error(name, value)
        now = self.state.clock.now()
        job = Job(
            id=self.state.new_id("750"),
            kind=kind,
            operation=str(body.get("operation")),
            object="",
            user_id=user.id,
            api_version=version,
            line_ending=line_ending,
            column_delimiter=delimiter,
            created=now,
            modstamp=now,
        )
        self.jobs[job.id] = job
        return job

    def _touch(self, job: Job, state: str | None = None) -> None:
        if state is not None:
            job.state = state
        job.modstamp = self.state.clock.now()

    # -- ingest: create, upload, close / abort, delete, list ----------------------------------

    async def create_ingest(self, request: web.Request, user: User, version: str) -> web.Response:
        body = await self._json(request)
        operation = body.get("operation")
        if operation not in INGEST_OPERATIONS:
            raise _enum_error("OperationEnum", operation)
        o = self.schema.object(str(body.get("object") or ""))
        if o is None:
            raise BulkError(
                400,
                "INVALIDENTITY",
                f"Entity '{body.get('object')}' is not supported by the Bulk API.",
            )
        if operation == "hardDelete":
            # Needs the "Bulk API Hard Delete" permission, which no local user has.
            raise BulkError(
                400,
                "FEATURENOTENABLED",
                "hardDelete operation requires special user profile permission, please contact "
                "your system administrator",
            )
        external = None
        if operation == "upsert":
            name = str(body.get("externalIdFieldName") or "")
            fd = o.field(name) if name else None
            if fd is None or not (fd.external_id or fd.name == "Id" or fd.id_lookup and fd.unique):
                raise BulkError(
                    400,
                    "INVALIDJOB",
                    f"The External ID field '{name}' is not an External ID or Id field of {o.name}"
                    if name
                    else "externalIdFieldName is required for upsert",
                )
            external = fd.name
        job = self._new_job("ingest", user, version, body)
        job.object = o.name
        job.external_id_field = external
        job.assignment_rule_id = body.get("assignmentRuleId") or None
        return web.json_response(_create_view(self.info(job, full=False)))

    async def upload(self, request: web.Request, user: User, version: str, job_id: str) -> Any:
        job = self._job(job_id, "ingest")
        ctype = request.headers.get("Content-Type", "text/csv").split(";")[0].strip().lower()
        if ctype != "text/csv":
            raise BulkError(
                400, "INVALIDCONTENTTYPE", f"Content-Type {ctype} is not supported: upload text/csv"
            )
        if job.state != "Open":
            raise BulkError(
                400,
                "INVALIDJOBSTATE",
                f"Job {job.id} is {job.state}: data can be uploaded only while it is Open",
            )
        limit = self.settings.max_upload_base64 * 3 // 4  # raw bytes that encode to the limit
        chunks: list[bytes] = []
        size = 0
        too_big = False
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                too_big = True  # keep reading (and dropping) so the client gets the answer
            elif not too_big:
                chunks.append(chunk)
        if too_big:
            raise BulkError(
                400,
                "INVALIDBATCH",
                f"The upload of {size} bytes exceeds {self.settings.max_upload_base64} bytes of "
                "base64 encoded content",
            )
        job.uploads.append(b"".join(chunks))
        self._touch(job)
        return web.Response(status=201)

    async def change_state(
        self, request: web.Request, user: User, version: str, job_id: str
    ) -> web.Response:
        job = self._job(job_id, self._kind(request))
        body = await self._json(request)
        wanted = body.get("state")
        if wanted == "UploadComplete" and job.kind == "ingest":
            if job.state not in CLOSABLE:
                raise BulkError(
                    400,
                    "INVALIDJOBSTATE",
                    f"Job {job.id} is {job.state}: only an Open job can be closed",
                )
            if len(job.uploads) > 1:
                raise BulkError(400, "INVALIDJOB", _MULTIPLE_UPLOADS.format(id=job.id[:15]))
            if not job.uploads:
                raise BulkError(
                    400,
                    "INVALIDJOB",
                    f"No content found for job: <{job.id[:15]}>; "
                    "upload data with PUT before closing the job",
                )
            self._touch(job, "UploadComplete")
            self._start(job)
        elif wanted == "Aborted":
            if job.state not in ABORTABLE:
                raise BulkError(
                    400,
                    "INVALIDJOBSTATE",
                    f"Job {job.id} is {job.state}: it can no longer be aborted",
                )
            self._touch(job, "Aborted")
        else:
            raise BulkError(
                400,
                "INVALIDJOBSTATE",
                f"Invalid state {wanted!r} for job {job.id}: use UploadComplete or Aborted",
            )
        return web.json_response(_create_view(self.info(job, full=False)))

    async def get_job(self, request: web.Request, user: User, version: str, job_id: str) -> Any:
        return web.json_response(self.info(self._job(job_id, self._kind(request))))

    async def delete_job(self, request: web.Request, user: User, version: str, job_id: str) -> Any:
        job = self._job(job_id, self._kind(request))
        if job.state not in DELETABLE:
            raise BulkError(
                400,
                "INVALIDJOBSTATE",
                f"Job {job.id} is {job.state}: close or abort it before deleting it",
            )
        if job.task is not None:
            job.task.cancel()
        del self.jobs[job.id]
        return web.Response(status=204)

    async def _list(self, kind: str) -> web.Response:
        records = [self.info(j, full=False) for j in self.jobs.values() if j.kind == kind]
        return web.json_response({"done": True, "records": records, "nextRecordsUrl": None})

    async def list_ingest(self, request: web.Request, user: User, version: str) -> web.Response:
        return await self._list("ingest")

    async def list_query(self, request: web.Request, user: User, version: str) -> web.Response:
        return await self._list("query")

    async def ingest_results(
        self, request: web.Request, user: User, version: str, job_id: str, which: str
    ) -> web.Response:
        job = self._job(job_id, "ingest")
        which = which.lower()
        if which == "successfulresults":
            header = ["sf__Id", "sf__Created", *job.header]
            rows = [
                [rid, "true" if created else "false", *row] for rid, created, row in job.successful
            ]
        elif which == "failedresults":
            header = ["sf__Id", "sf__Error", *job.header]
            rows = [[rid, error, *row] for rid, error, row in job.failed]
        else:
            header, rows = self._unprocessed(job)
        return web.Response(
            text=_csv_text(header, rows, job), content_type="text/csv", charset="utf-8"
        )

    def _unprocessed(self, job: Job) -> tuple[list[str], list[list[str]]]:
        if job.header:
            return job.header, job.rows[job.next_row :]
        try:  # not parsed yet (Open, aborted before processing) or unreadable (Failed)
            return parse_csv(job.uploads[0], job) if job.uploads else ([], [])
        except JobFailed:
            return [], []

    # -- processing -------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        runner = self._run_ingest if job.kind == "ingest" else self._run_query
        job.task = asyncio.get_running_loop().create_task(runner(job))

    async def _queued(self, job: Job) -> bool:
        """Wait for the processing delay; False if the job was aborted meanwhile."""
        if self.settings.processing_delay_ms:
            await asyncio.sleep(self.settings.processing_delay_ms / 1000)
        if job.state != "UploadComplete":
            return False
        self._touch(job, "InProgress")
        return True

    def _fail(self, job: Job, message: str) -> None:
        job.error_message = message
        self._touch(job, "Failed")

    async def _run_ingest(self, job: Job) -> None:
        if not await self._queued(job):
            return
        started = time.monotonic()
        try:
            o = self.schema.objects[job.object]
            header, rows = parse_csv(job.uploads[0], job)
            columns = self._columns(o, job, header)
        except JobFailed as exc:
            self._fail(job, str(exc))
            return
        job.header, job.rows = header, rows
        user = self.state.users[job.user_id]
        ctx = Ctx(self.server, user, job.api_version, api="bulkapi")
        write = getattr(self, f"_row_{job.operation}")
        for start in range(0, len(rows), CHUNK_ROWS):
            if job.state != "InProgress":  # aborted: the rest stays unprocessed
                return
            marks = len(job.successful), len(job.failed)
            try:
                with self.state.transaction():
                    for row in rows[start : start + CHUNK_ROWS]:
                        self._process_row(job, ctx, o, columns, row, write)
            except Exception:  # a bug of ours: the chunk is rolled back, the job fails loudly
                log.exception("Bulk API job %s stopped", job.id)
                del job.successful[marks[0] :], job.failed[marks[1] :]
                self._fail(job, "UnknownException : an unexpected error stopped the job")
                return
            job.next_row = min(start + CHUNK_ROWS, len(rows))
            job.processing_ms = int((time.monotonic() - started) * 1000)
            await asyncio.sleep(self.settings.chunk_delay_ms / 1000)  # let polls in between
        self._touch(job, "JobComplete")

    def _columns(self, o: ObjectDef, job: Job, header: list[str]) -> list[tuple[str, Any]]:
        """(body key, relationship info or None) per CSV column; unknown names fail the job."""
        out: list[tuple[str, Any]] = []
        for name in header:
            if "." in name:  # a parent by external id: Account.Ext__c or Owner:User.Ext__c
                rel_part, _, ext = name.partition(".")
                rel_name, _, target_type = rel_part.partition(":")
                rel = o.relationships.get(rel_name.lower())
                target = self.schema.object(target_type or (rel.reference_to[0] if rel else ""))
                if rel is None or target is None or target.field(ext) is None:
                    raise JobFailed(f"InvalidBatch : Field name not found : {name}")
                out.append((rel_name, (rel, target_type, ext)))
            elif o.field(name) is None:
                raise JobFailed(f"InvalidBatch : Field name not found : {name}")
            else:
                out.append((name, None))
        if job.operation in ("delete", "update") and not any(key.lower() == "id" for key, _ in out):
            raise JobFailed(
                f"InvalidBatch : Field name not found : Id (required for {job.operation})"
            )
        return out

    def _process_row(
        self,
        job: Job,
        ctx: Ctx,
        o: ObjectDef,
        columns: list[tuple[str, Any]],
        row: list[str],
        write: Callable[[Ctx, ObjectDef, Job, dict[str, Any]], tuple[str, bool]],
    ) -> None:
        row = row + [""] * (len(columns) - len(row))
        if len(row) > len(columns):
            problem = {
                "errorCode": "INVALID_FIELD",
                "message": f"the row has {len(row)} values for {len(columns)} columns",
                "fields": [],
            }
            job.failed.append(("", _sf_error([problem]), row))
            return
        body: dict[str, Any] = {}
        for (key, rel), raw in zip(columns, row, strict=True):
            if raw == "":
                continue  # an empty value leaves the field as it is
            value = None if raw == NULL_VALUE else raw
            if rel is None:
                body[key] = value
            elif value is None:
                body[rel[0].name] = None
            else:
                ref: dict[str, Any] = {rel[2]: value}
                if rel[1]:
                    ref["attributes"] = {"type": rel[1]}
                body[key] = ref
        try:
            rid, created = write(ctx, o, job, body)
        except DmlError as exc:
            job.failed.append((_failed_id(exc), _sf_error(exc.errors), row))
        except MultipleMatches as exc:
            problem = {
                "errorCode": "DUPLICATE_EXTERNAL_ID",
                "message": "more than one record "
                "found for external id field: " + str([u.rsplit("/", 1)[1] for u in exc.urls]),
                "fields": [],
            }
            job.failed.append(("", _sf_error([problem]), row))
        else:
            job.successful.append((rid, created, row))

    @staticmethod
    def _row_insert(ctx: Ctx, o: ObjectDef, job: Job, body: dict[str, Any]) -> tuple[str, bool]:
        return dml.create(ctx, o.name, body), True

    @staticmethod
    def _record_id(body: dict[str, Any], operation: str) -> str:
        raw = next((v for k, v in body.items() if k.lower() == "id"), None)
        if not raw:
            raise DmlError.one("MISSING_ARGUMENT", f"Id not specified in an {operation} call")
        rid = ids.normalize(str(raw))
        if rid is None:
            raise DmlError.one("MALFORMED_ID", f"malformed id {raw}", ["Id"])
        return rid

    def _row_update(self, ctx: Ctx, o: ObjectDef, job: Job, body: dict[str, Any]) -> Any:
        rid = self._record_id(body, "update")
        fields = {k: v for k, v in body.items() if k.lower() != "id"}
        try:
            return dml.update(ctx, o.name, rid, fields), False
        except DmlError as exc:
            exc.errors = [dict(e, id=rid) for e in exc.errors]
            raise

    def _row_delete(self, ctx: Ctx, o: ObjectDef, job: Job, body: dict[str, Any]) -> Any:
        rid = self._record_id(body, "delete")
        found = self.state.find(rid)
        if found is None or found[0] != o.name:
            raise DmlError(
                [
                    dict(
                        dml.sf_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"),
                        id=rid,
                    )
                ]
            )
        try:
            dml.delete(ctx, o.name, rid)
        except DmlError as exc:
            exc.errors = [dict(e, id=rid) for e in exc.errors]
            raise
        return rid, False

    @staticmethod
    def _row_upsert(ctx: Ctx, o: ObjectDef, job: Job, body: dict[str, Any]) -> tuple[str, bool]:
        key = str(job.external_id_field)
        value = next((v for k, v in body.items() if k.lower() == key.lower()), None)
        if value is None:
            raise DmlError.one("MISSING_ARGUMENT", f"{key} not specified", [key])
        created, rid = dml.upsert(ctx, o.name, key, str(value), body)
        return rid, created

    # -- query jobs -------------------------------------------------------------------------

    async def create_query(self, request: web.Request, user: User, version: str) -> web.Response:
        if float(version) < MIN_QUERY_VERSION:
            raise BulkError(404, "NOT_FOUND", "The requested resource does not exist")
        body = await self._json(request)
        operation = body.get("operation")
        if operation not in QUERY_OPERATIONS:
            raise _enum_error("OperationEnum", operation)
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise BulkError(400, "INVALIDJOB", "query is required for a query job")
        compiled = self.queries.compile(text, all_rows=operation == "queryAll")
        q = compiled.q
        if compiled.children:
            raise BulkError(
                400,
                "API_ERROR",
                "Aggregate Relationships not supported in Bulk V2 Query with CSV content type",
            )
        if q.count or q.aggregates:
            raise BulkError(
                400, "API_ERROR", "Aggregate queries are not supported in Bulk V2 Query"
            )
        if q.offset:
            raise BulkError(400, "API_ERROR", "OFFSET is not supported in Bulk V2 Query")
        job = self._new_job("query", user, version, body)
        job.object = compiled.o.name
        job.query = text
        self._touch(job, "UploadComplete")
        self._start(job)
        return web.json_response(_create_view(self.info(job, full=False)))

    async def _run_query(self, job: Job) -> None:
        if not await self._queued(job):
            return
        started = time.monotonic()
        assert job.query is not None
        all_rows = job.operation == "queryAll"
        try:
            compiled = self.queries.compile(job.query, all_rows=all_rows)
            result = self.queries.run(
                job.query,
                all_rows=all_rows,
                batch_size=1 << 62,  # every row at once: no REST cursor
                user_id=job.user_id,
                version=job.api_version,
            )
        except SoqlError as exc:  # valid when created; the org changed since (rare)
            self._fail(job, f"InvalidBatch : {exc.code}: {exc.message}")
            return
        except Exception:
            log.exception("Bulk API query job %s stopped", job.id)
            self._fail(job, "UnknownException : an unexpected error stopped the job")
            return
        job.header = [p.canonical for p in compiled.paths]
        types = [p.field.type for p in compiled.paths]
        job.rows = [
            [_csv_value(_lookup(rec, path), t) for path, t in zip(job.header, types, strict=True)]
            for rec in result["records"]
        ]
        job.processing_ms = int((time.monotonic() - started) * 1000)
        self._touch(job, "JobComplete")

    async def query_results(
        self, request: web.Request, user: User, version: str, job_id: str
    ) -> web.Response:
        job = self._job(job_id, "query")
        if job.state != "JobComplete":
            raise BulkError(
                400,
                "INVALIDJOBSTATE",
                f"Job {job.id} is {job.state}: results are ready when it is JobComplete",
            )
        offset = 0
        locator = request.query.get("locator", "")
        if locator and locator != "null":
            try:
                offset = int(base64.b64decode(locator + "=" * (-len(locator) % 4)).decode())
            except ValueError:
                offset = -1
            if not 0 <= offset <= len(job.rows):
                raise BulkError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}")
        size = len(job.rows) - offset
        raw_max = request.query.get("maxRecords")
        if raw_max is not None:
            if not raw_max.isdigit() or int(raw_max) < 1:
                raise BulkError(
                    400, "INVALIDPARAMETER", f"maxRecords must be a positive integer: {raw_max}"
                )
            size = min(size, int(raw_max))
        page = job.rows[offset : offset + size]
        nxt = offset + len(page)
        next_locator = (
            base64.b64encode(str(nxt).encode()).decode().rstrip("=")
            if nxt < len(job.rows)
            else "null"
        )
        return web.Response(
            text=_csv_text(job.header, page, job),
            content_type="text/csv",
            charset="utf-8",
            headers={"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(len(page))},
        )

    # -- control (`/__devorg__/bulk`) -------------------------------------------------------

    async def control(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "the body must be JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "the body must be an object"}, status=400)
            for key in ("processing_delay_ms", "chunk_delay_ms", "max_upload_base64"):
                if key in body:
                    value = body[key]
                    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                        return web.json_response(
                            {"error": f"{key} must be a non-negative integer"}, status=400
                        )
                    setattr(self.settings, key, value)
        states: dict[str, int] = {}
        for job in self.jobs.values():
            states[job.state] = states.get(job.state, 0) + 1
        return web.json_response({**self.settings.to_dict(), "jobs": states})


def _create_view(info: dict[str, Any]) -> dict[str, Any]:
    """The create / close / abort answer: the job without its counters."""
    return {k: v for k, v in info.items() if k != "jobType"}


def _enum_error(enum: str, value: Any) -> BulkError:
    return BulkError(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {enum} from VALUE_STRING value {value} or request may "
        "be missing a required field at [line:1, column:1]",
    )


def _failed_id(exc: DmlError) -> str:
    """sf__Id of a failed row: the record it named, if any (empty for inserts)."""
    return str(exc.errors[0].get("id") or "") if exc.errors else ""


def _lookup(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _csv_value(value: Any, field_type: str) -> str:
    """A value as Bulk API CSV writes it: null empty, booleans true/false, ISO dates."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    if field_type == "datetime" and isinstance(value, str) and value.endswith("+0000"):
        return value[:-5] + "Z"
    return str(value)


def setup(app: web.Application, server: DevOrgServer) -> BulkApi:
    """Register the jobs resources (before the REST catch-all) and the control knob."""
    api = BulkApi(server)
    server.state.add_listener(api)
    app.router.add_route("*", "/services/data/v{version}/jobs/{tail:.*}", api.handle)
    app.router.add_route("GET", "/__devorg__/bulk", api.control)
    app.router.add_route("POST", "/__devorg__/bulk", api.control)
    return api
