"""One import from start to end: the file checked whole, then batches of rows.

Each batch of rows (`defaults.IMPORT_BATCH_SIZE`, 200) is looked up in Salesforce together (a
few queries, in composite requests) and committed on its own; a row the database refuses fails
alone (a sale in its own savepoint; people in one per batch, saved again row by row when one is
refused), and a crash keeps every batch committed before it. Rows are connected by Salesforce id
or stored client id, so running the same file again changes nothing (`unchanged`). A Salesforce
failure during a batch's lookups fails that batch's rows with the reason and the import goes on.

The API calls are counted on the org's HTTP session (every REST request, not the login), and
the failed and skipped rows are written to a CSV report with their line and reason. After a
bulk import the database's planner statistics are refreshed (`Store.analyze`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import defaults
from bridge.config import OrgConfig
from bridge.errors import BridgeError, UsageError
from bridge.imports import csvfile, leads, sales
from bridge.imports.outcomes import Pending, Result, Target
from bridge.store import Store, get_or_create_program
from bridge.store.models import OrgConnection, Program
from bridge.writeback.client import OrgWriter

CONNECTORS: dict[csvfile.Kind, Callable[[Session, Target, list[Pending]], list[Result]]] = {
    "leads": leads.connect,
    "sales": sales.connect,
}


@dataclass
class Summary:
    read: int = 0
    connected: int = 0
    created: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    api_calls: int = 0
    org_usage: str | None = None  # the org's daily usage Salesforce reported last
    report: Path | None = None
    push_ids: list[int] = field(default_factory=list)

    def add(self, result: Result) -> None:
        setattr(self, result.state, getattr(self, result.state) + 1)
        self.created += 1 if result.created else 0
        if result.push_id is not None:
            self.push_ids.append(result.push_id)

    def lines(self, kind: csvfile.Kind, dry_run: bool) -> list[str]:
        made = "referrals" if kind == "leads" else "sales"
        out = [
            f"rows read:  {self.read}",
            f"connected:  {self.connected} ({self.created} new {made})",
            f"unchanged:  {self.unchanged} (connected before)",
            f"skipped:    {self.skipped}",
            f"failed:     {self.failed}",
            f"API calls:  {self.api_calls}"
            + (f" (the org has used {self.org_usage})" if self.org_usage else ""),
        ]
        if self.report is not None:
            out.append(f"failed and skipped rows: {self.report}")
        if dry_run:
            out.append("dry run: nothing was saved")
        return out


def default_report(path: Path) -> Path:
    """`leads.csv` -> `leads.errors.csv`, next to it."""
    return path.with_name(f"{path.stem}.errors.csv")


def program_for(session: Session, conn: OrgConnection, org_config: OrgConfig, key: str) -> Program:
    """The program `key` of the org (created from the config on first use)."""
    spec = next((p for p in org_config.programs if p.key == key), None)
    if spec is None:
        keys = ", ".join(p.key for p in org_config.programs)
        raise UsageError(f"program '{key}' is not one of the org's programs: {keys}")
    return get_or_create_program(session, key, spec.name, conn.id)


@contextmanager
def counted_calls(sf_org: Any) -> Iterator[list[int]]:
    """Counts the org's REST requests while open (`[n]`)."""
    count = [0]

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        if "/services/data/" in response.url:
            count[0] += 1

    sf_org.http.hooks["response"].append(hook)
    try:
        yield count
    finally:
        sf_org.http.hooks["response"].remove(hook)


def run_import(
    store: Store,
    sf_org: Any,
    org_name: str,
    org_config: OrgConfig,
    file: csvfile.ImportFile,
    *,
    program_key: str | None = None,
    dry_run: bool = False,
    push: bool = False,
    report: Path | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> Summary:
    """Import `file` (read and checked by `csvfile.read`) into the org `org_name`'s program;
    `progress(n)` after each batch of n rows."""
    summary = Summary(read=len(file.rows))
    with store.session() as session:
        conn = session.scalar(select(OrgConnection).where(OrgConnection.name == org_name))
        if conn is None:
            raise UsageError(f"org '{org_name}' is not connected: run sfbridge org connect")
        program = program_for(session, conn, org_config, program_key or org_config.receiver.program)
    bad: list[Result] = []
    connect = CONNECTORS[file.kind]
    with counted_calls(sf_org) as calls:
        target = Target(OrgWriter.for_org(sf_org), conn, org_config, program, push)
        size = defaults.IMPORT_BATCH_SIZE
        for start in range(0, len(file.rows), size):
            rows = file.rows[start : start + size]
            for result in _batch(store, target, connect, rows, dry_run):
                summary.add(result)
                if result.state in ("failed", "skipped"):
                    bad.append(result)
            progress(len(rows))
        summary.api_calls = calls[0]
    usage = getattr(sf_org, "api_usage", None)
    summary.org_usage = usage.words() if usage is not None else None
    summary.report = write_report(report or default_report(file.path), file.columns, bad)
    if not dry_run and summary.read:
        store.analyze()
    return summary


def _batch(
    store: Store,
    target: Target,
    connect: Callable[[Session, Target, list[Pending]], list[Result]],
    rows: list[csvfile.Row],
    dry_run: bool,
) -> list[Result]:
    pending = [Pending(row) for row in rows]
    for p in pending:
        if p.row.problem:
            p.fail(p.row.problem)
    with store.sessions() as session:
        session.begin()
        try:
            results = connect(session, target, pending)
        except BridgeError as exc:  # a lookup failed: the batch's rows share it
            session.rollback()
            return [
                p.result or Result(p.row, "failed", f"Salesforce lookup failed: {exc.message}")
                for p in pending
            ]
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return results


def write_report(path: Path, columns: list[str], bad: list[Result]) -> Path | None:
    """The failed and skipped rows (line, outcome, reason, the row's cells) as CSV; None, and
    no file (an older report there is removed), when every row went in."""
    if not bad:
        path.unlink(missing_ok=True)
        return None
    try:
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "outcome", "reason", *columns])
            for r in sorted(bad, key=lambda r: r.row.line):
                writer.writerow(
                    [r.row.line, r.state, r.reason, *(r.row.values.get(c, "") for c in columns)]
                )
    except OSError as exc:
        raise UsageError(f"{path}: the report cannot be written: {exc.strerror or exc}") from None
    return path
