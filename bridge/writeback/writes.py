"""Writing planned records (`Write`s) to Salesforce, as few calls as their number allows.

Grouped by object, operation and external id into sObject Collections of ≤ 200 records
(allOrNone false); up to COMPOSITE_HEAVY of those go in one composite call, which counts as
ONE call against the org's allocation ("Up to 5 of these subrequests can be sObject
Collections or query operations", REST API Developer Guide, Composite). A group larger than
`writeback.bulk_threshold` goes through Bulk API 2.0 instead. Every record's result comes back
as an `Outcome` for its push, the same from every path. `send` is the one way a collection
write reaches Salesforce: the sales path's steps (`sales_records.write_all`) use it too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from bridge.writeback import campaigns
from bridge.writeback.client import (
    COLLECTION_LIMIT,
    COMPOSITE_HEAVY,
    Writer,
    chunks,
    record_error,
)
from bridge.writeback.planning import Outcome, Write, failure_outcome


def _request(write_group: list[Write]) -> tuple[str, str, list[dict[str, Any]]]:
    first = write_group[0]
    records = []
    for w in write_group:
        record: dict[str, Any] = {"attributes": {"type": w.sobject}, **w.fields}
        if w.op == "update":
            # Field names are case-insensitive in Salesforce; the docs' examples write "id".
            record["Id"] = w.record_id
        records.append(record)
    if first.op == "upsert":
        return "PATCH", f"composite/sobjects/{first.sobject}/{first.external_id_field}", records
    if first.op == "update":
        return "PATCH", "composite/sobjects", records
    return "POST", "composite/sobjects", records


def execute(writer: Writer, writes: list[Write], bulk_threshold: int | None = None) -> Any:
    """Yield the outcomes of each API call: the writes grouped by object, operation and key
    into sObject Collections of 200, up to COMPOSITE_HEAVY of them in one composite call (one
    call against the allocation); a group larger than `bulk_threshold` goes through Bulk API
    2.0 instead."""
    parts: list[list[Write]] = []
    for group in groups(writes):
        if bulk_threshold is not None and len(group) > bulk_threshold:
            yield _bulk(writer, group)
        else:
            parts += chunks(group, COLLECTION_LIMIT)
    for call in send(writer, parts):
        outcomes: list[Outcome] = []
        for part, answer in call:
            if isinstance(answer, Exception):  # that subrequest (or the call) failed as a whole
                outcomes += [failure_outcome(w.push_id, answer, fields=w.fields) for w in part]
                continue
            outcomes += [
                _outcome(w, result, "collections") for w, result in zip(part, answer, strict=True)
            ]
        yield outcomes


def groups(writes: list[Write]) -> list[list[Write]]:
    """The writes by object, operation and external id, in the order they first appear."""
    out: dict[tuple[str, str, str | None], list[Write]] = defaultdict(list)
    for w in writes:
        out[(w.sobject, w.op, w.external_id_field)].append(w)
    return list(out.values())


def send(
    writer: Writer, parts: list[list[Write]]
) -> Iterator[list[tuple[list[Write], list[dict[str, Any]] | Exception]]]:
    """The one way a collection write reaches Salesforce: each part (≤ 200 writes of one
    object, operation and key) one sObject Collections request, up to COMPOSITE_HEAVY of them
    in one composite call. Yields, per call, each part with its records' results in order, or
    the error that failed it as a whole (the call itself failing fails each of its parts)."""
    for call in pack(parts):
        try:
            answers = writer.collections([_request(part) for part in call])
        except Exception as exc:
            answers = [exc] * len(call)
        yield list(zip(call, answers, strict=True))


def pack(parts: list[list[Write]]) -> list[list[list[Write]]]:
    """Collection requests (each ≤ 200 records) into composite calls of ≤ COMPOSITE_HEAVY."""
    return chunks(parts, COMPOSITE_HEAVY)


BULK_OPERATIONS = {"create": "insert", "update": "update", "upsert": "upsert"}


def _bulk(writer: Writer, group: list[Write]) -> list[Outcome]:
    """One group through Bulk API 2.0: each row's result lands on its push as a collection
    record's would (the same result shape, the same error classes)."""
    first = group[0]
    records = [{**w.fields, **({"Id": w.record_id} if w.op == "update" else {})} for w in group]
    try:
        results = writer.bulk(
            first.sobject,
            BULK_OPERATIONS[first.op],
            records,
            external_id_field=first.external_id_field,
        )
    except Exception as exc:
        return [failure_outcome(w.push_id, exc, fields=w.fields) for w in group]
    return [_outcome(w, result, "bulk") for w, result in zip(group, results, strict=True)]


def _outcome(w: Write, result: dict[str, Any], via: str) -> Outcome:
    if result.get("success"):
        return Outcome(
            w.push_id,
            "sent",
            sf_id=result.get("id") or w.record_id,
            sobject=w.sobject,
            local_updates=w.local_updates,
            fields=w.fields,
            via=via,
            created=w.op == "create" or bool(result.get("created")),
        )
    err = record_error(result)
    note = campaigns.already_member(w.sobject, err) if w.op == "create" else None
    if note:
        return Outcome(w.push_id, "sent", sobject=w.sobject, fields=w.fields, via=via, note=note)
    return Outcome(
        w.push_id,
        "failed",
        sobject=w.sobject,
        error=err,
        error_class=err.error_class,
        fields=w.fields,
        via=via,
    )
