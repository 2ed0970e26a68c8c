"""`sfbridge import leads|sales` as a real process against the local org, on SQLite and
PostgreSQL: a few hundred rows in batches of 50 (`SFBRIDGE_IMPORT_BATCH_SIZE`, 200 in
production) with bad ones among them, the progress lines, the summary, the report of failed rows,
the connected ids, the batched API calls and an idempotent re-run."""

from __future__ import annotations

import csv
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from bridge.devorg.ids import make_id
from bridge.devorg.testing import DevOrg
from bridge.store import Store
from bridge.store.models import Program, Push, Referral, Sale
from tests.harness import ORG, Bridge, sfbridge_command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BATCH = 50  # rows per batch: the files below span several, as thousands would at 200
LEADS = 360
CONTACTS = 60
LOCAL = 80  # leads that are local referrals already


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, store: Store, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(
        tmp_path / "bridge", clean_devorg, redis_url, topics=[],
        extra_env={"SFBRIDGE_IMPORT_BATCH_SIZE": str(BATCH)},
    )  # fmt: skip
    b.store.dispose()
    b.store, b.db_url = store, store.url  # the parametrized store: SQLite, then PostgreSQL
    b.install()
    yield b
    b.close()


def _create(sf: Any, sobject: str, records: list[dict[str, Any]]) -> list[str]:
    ids = []
    for start in range(0, len(records), 200):
        part = [{"attributes": {"type": sobject}, **r} for r in records[start : start + 200]]
        res = sf.restful("composite/sobjects", method="POST", json={"records": part})
        assert all(r["success"] for r in res), res
        ids += [r["id"] for r in res]
    return ids


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig") as out:  # with a byte-order mark
        writer = csv.DictWriter(out, header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _run(bridge: Bridge, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*sfbridge_command(), "import", *args],
        env=bridge.env,
        cwd=bridge.root,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _summary(out: str) -> dict[str, int]:
    found = dict(re.findall(r"^(rows read|connected|unchanged|skipped|failed|API calls):\s+(\d+)",
                            out, re.M))  # fmt: skip
    return {k: int(v) for k, v in found.items()}


def _calls(org: DevOrg) -> int:
    user = org.info["users"]["integration"]["username"]
    return int(org.control("stats", method="GET")["api_calls"]["by_user"].get(user, 0))


def _planner_stats(store: Store) -> Any:
    """SQLite: the rows ANALYZE last counted in the referrals' email index; PostgreSQL: when
    the referrals were last analyzed by a command (not autovacuum)."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            stat = conn.exec_driver_sql(
                "SELECT stat FROM sqlite_stat1 WHERE idx = 'ix_referrals_email'"
            ).scalar()
            return int(str(stat).split()[0]) if stat else 0
        return conn.exec_driver_sql(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'referrals'"
        ).scalar()


def _report(path: Path) -> dict[int, tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        return {int(r["line"]): (r["outcome"], r["reason"]) for r in csv.DictReader(f)}


def test_import_leads(bridge: Bridge, tmp_path: Path) -> None:
    sf = bridge.org.sf("sales")
    lead_ids = _create(sf, "Lead", [
        {"LastName": f"Lead{i}", "FirstName": "Pat", "Company": f"Co {i}",
         "Email": f"lead{i}@import.test"} for i in range(LEADS)
    ])  # fmt: skip
    [account_id] = _create(sf, "Account", [{"Name": "Harbor Supply"}])
    contact_ids = _create(sf, "Contact", [
        {"LastName": f"Contact{i}", "Email": f"contact{i}@import.test", "AccountId": account_id}
        for i in range(CONTACTS)
    ])  # fmt: skip
    # LOCAL people are local already (by email): the import connects them, creating nobody
    with bridge.store.session() as s:
        program = Program(key="main", name="Main")
        s.add(program)
        s.flush()
        for i in range(LOCAL):
            s.add(Referral(public_id=f"R-local-{i}", program_id=program.id,
                           last_name=f"Lead{i}", email=f"lead{i}@import.test"))  # fmt: skip

    rows: list[dict[str, str]] = []
    expect: dict[int, str] = {}  # row index -> the Salesforce id it connects to
    for i in range(LEADS):  # by id (18, then 15 characters), then by email alone
        if i < LEADS // 2:
            rows.append({"sf_lead_id": lead_ids[i] if i % 2 else lead_ids[i][:15],
                         "email": f"lead{i}@import.test", "first_name": "Pat"})  # fmt: skip
        else:
            rows.append({"email": f"LEAD{i}@Import.test", "company": f"Co {i}"})
        expect[len(rows) - 1] = lead_ids[i]
    for i in range(CONTACTS):
        rows.append({"email": f"contact{i}@import.test", "last_name": f"Contact{i}"})
        expect[len(rows) - 1] = contact_ids[i]
    bad = {
        "sf_lead_id: 'not-an-id' is not a Salesforce id": {"sf_lead_id": "not-an-id"},
        "is a Contact id (Lead ids start with 00Q)": {"sf_lead_id": contact_ids[0]},
        "no Lead with this id in the org": {"sf_lead_id": make_id("00Q", 10**9)},
        "no Lead or Contact in Salesforce has the email": {"email": "nobody@import.test"},
        "email 'nobody' is not an email address": {"email": "nobody"},
    }
    spread = [(reason, values) for _n in range(2) for reason, values in bad.items()]
    good, good_ids = rows, expect
    rows, expect, bad_at = [], {}, {}
    for k, row in enumerate(good):  # a bad row every 40 rows
        if k % 40 == 5 and spread:
            reason, values = spread.pop()
            bad_at[len(rows)] = reason
            rows.append(values)
        expect[len(rows)] = good_ids[k]
        rows.append(row)
    total = LEADS + CONTACTS + 2 * len(bad)
    assert len(rows) == total
    header = ["sf_lead_id", "email", "first_name", "last_name", "company"]
    path = _write_csv(tmp_path / "people.csv", header, rows)

    with bridge.store.session() as s:
        before = s.scalar(select(func.count()).select_from(Referral))
    dry = _run(bridge, "leads", str(path), "--dry-run")
    assert dry.returncode == 1, dry.stderr
    assert "dry run: nothing was saved" in dry.stdout
    with bridge.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Referral)) == before
        assert s.scalar(select(func.count()).where(Referral.sf_lead_id.is_not(None))) == 0

    calls_before, stats_before = _calls(bridge.org), _planner_stats(bridge.store)
    first = _run(bridge, "leads", str(path))
    used = _calls(bridge.org) - calls_before
    assert first.returncode == 1, first.stderr  # some rows failed
    assert "Traceback" not in first.stderr
    progress = re.findall(rf"^people\.csv: (\d+) of {total} rows \((\d+)%\)$", first.stderr, re.M)
    assert len(progress) >= 5 and progress[-1] == (str(total), "100"), first.stderr
    summary = _summary(first.stdout)
    assert summary == {
        "rows read": total, "connected": LEADS + CONTACTS, "unchanged": 0, "skipped": 2,
        "failed": 8, "API calls": summary["API calls"],
    }, first.stdout  # fmt: skip
    assert f"({LEADS + CONTACTS - LOCAL} new referrals)" in first.stdout
    batches = -(-total // BATCH)
    # a few composite requests per batch of BATCH rows (one per row would be `total`)
    assert summary["API calls"] <= 3 * batches, first.stdout
    assert summary["API calls"] <= used <= summary["API calls"] + 2  # + the login's identity

    assert _planner_stats(bridge.store) != stats_before  # refreshed after the import

    report = _report(tmp_path / "people.errors.csv")
    assert {line - 2: reason for line, (_o, reason) in report.items()}.keys() == bad_at.keys()
    for line, (outcome, reason) in report.items():
        assert bad_at[line - 2] in reason, (line, reason)
        assert outcome == ("skipped" if "has the email" in reason else "failed")

    with bridge.store.session() as s:
        connected = dict(
            s.execute(
                select(
                    Referral.email_key, func.coalesce(Referral.sf_lead_id, Referral.sf_contact_id)
                )
            ).all()
        )
        local = s.scalar(select(Referral).where(Referral.public_id == "R-local-3"))
        assert local is not None and local.sf_lead_id == lead_ids[3]  # the local one, connected
        contact = s.scalar(select(Referral).where(Referral.sf_contact_id == contact_ids[5]))
        assert contact is not None and contact.sf_account_id == account_id
        assert (
            s.scalar(select(func.count()).select_from(Referral))
            == before + LEADS + CONTACTS - LOCAL
        )
    for i, sf_id in expect.items():
        email = rows[i]["email"].lower()
        assert connected.get(email) == sf_id, (i, rows[i])

    again = _run(bridge, "leads", str(path))
    assert again.returncode == 1
    assert _summary(again.stdout) | {"API calls": 0} == {
        "rows read": total, "connected": 0, "unchanged": LEADS + CONTACTS, "skipped": 2,
        "failed": 8, "API calls": 0,
    }, again.stdout  # fmt: skip
    assert "(0 new referrals)" in again.stdout
    with bridge.store.session() as s:
        assert (
            s.scalar(select(func.count()).select_from(Referral))
            == before + LEADS + CONTACTS - LOCAL
        )


def test_import_sales(bridge: Bridge, tmp_path: Path) -> None:
    sf = bridge.org.sf("sales")
    n = 120
    accounts = _create(sf, "Account", [
        {"Name": f"Shop {i}", "Phone": f"(415) 555-{i:04d}", "BillingCity": "Oakland"}
        for i in range(n)
    ])  # fmt: skip
    contacts = _create(sf, "Contact", [
        {"LastName": f"Owner{i}", "Phone": f"415-555-{i:04d}", "AccountId": accounts[i]}
        for i in range(n)
    ])  # fmt: skip
    with bridge.store.session() as s:
        program = Program(key="main", name="Main")
        s.add(program)
        s.flush()
        for i in range(n):
            s.add(Referral(public_id=f"R-{i}", program_id=program.id, last_name=f"Owner{i}",
                           phone=f"+1 415 555 {i:04d}", email=f"owner{i}@shop.test"))  # fmt: skip
    rows = []
    for i in range(n):
        row = {"sale_id": f"S-{i}", "business_name": f"Shop {i}", "closed_at": "2026-04-03",
               "amount": "120.50"}  # fmt: skip
        if i % 3 == 0:  # by the Salesforce ids
            row |= {"referral_id": f"R-{i}", "sf_account_id": accounts[i]}
        elif i % 3 == 1:  # by the cascades: phone, then name; the Contact by phone
            row |= {"email": f"owner{i}@shop.test", "phone": f"415.555.{i:04d}"}
        else:  # by name alone, the Contact by the referral's last name
            row |= {"referral_id": f"R-{i}", "product_code": "GOLD", "quantity": "2",
                    "unit_price": "60.25"}  # fmt: skip
        rows.append(row)
    rows.insert(10, {"sale_id": "S-bad-1", "business_name": "X", "closed_at": "soon",
                     "referral_id": "R-1"})  # fmt: skip
    rows.insert(20, {"sale_id": "S-bad-2", "business_name": "Nobody's Shop",
                     "closed_at": "2026-04-03", "referral_id": "R-2"})  # fmt: skip
    rows.insert(30, {"sale_id": "S-bad-3", "business_name": "Shop 3", "closed_at": "2026-04-03",
                     "referral_id": "R-3", "sf_contact_id": contacts[4],
                     "sf_account_id": accounts[3]})  # fmt: skip
    rows.insert(40, {"sale_id": "S-bad-4", "business_name": "Shop 4", "closed_at": "2026-04-03",
                     "referral_id": "R-nobody"})  # fmt: skip
    header = ["sale_id", "referral_id", "email", "business_name", "phone", "closed_at", "amount"]
    header += ["sf_account_id", "sf_contact_id", "product_code", "quantity", "unit_price"]
    path = _write_csv(tmp_path / "sales.csv", header, rows)
    report = tmp_path / "sales-problems.csv"

    calls_before = _calls(bridge.org)
    first = _run(bridge, "sales", str(path), "--errors", str(report))
    used = _calls(bridge.org) - calls_before
    assert first.returncode == 1, first.stderr
    summary = _summary(first.stdout)
    assert summary | {"API calls": 0} == {
        "rows read": n + 4, "connected": n, "unchanged": 0, "skipped": 1, "failed": 3,
        "API calls": 0,
    }, first.stdout  # fmt: skip
    # per batch: the ids read back, a few Account queries (each phone under its usual
    # spellings, cut at the URL budget), the Contacts of the Accounts
    assert 0 < summary["API calls"] <= 6 * -(-(n + 4) // BATCH), first.stdout
    assert summary["API calls"] <= used <= summary["API calls"] + 2
    reasons = {line: reason for line, (_o, reason) in _report(report).items()}
    assert reasons[12].startswith("closed_at 'soon' is not a date")
    assert reasons[22].startswith("no Account to connect: no account named so")
    assert reasons[32] == (
        f"Contact {contacts[4]} belongs to Account {accounts[4]}, not to {accounts[3]} "
        "(sf_account_id)"
    )
    assert reasons[42].startswith("no referral with referral_id R-nobody in the program")

    with bridge.store.session() as s:
        for i in (0, 1, 2, 59, 118):  # each way of connecting, across batches
            r = s.scalar(select(Referral).where(Referral.public_id == f"R-{i}"))
            assert r is not None and (r.sf_account_id, r.sf_contact_id) == (
                accounts[i],
                contacts[i],
            )
        sales = s.scalars(select(Sale)).all()
        assert len(sales) == n
        pushes = s.scalars(select(Push).where(Push.kind == "sale")).all()
        assert {(p.state, p.error_code) for p in pushes} == {("skipped", "imported")}
        two = next(x for x in sales if x.client_id == "S-2")
        assert two.body["items"] == [
            {"product_code": "GOLD", "quantity": "2", "unit_price": "60.25"}
        ]

    again = _run(bridge, "sales", str(path), "--errors", str(report))
    assert _summary(again.stdout) | {"API calls": 0} == {
        "rows read": n + 4, "connected": 0, "unchanged": n, "skipped": 1, "failed": 3,
        "API calls": 0,
    }, again.stdout  # fmt: skip
    with bridge.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Sale)) == n


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "people.csv: no such file"),
        (b"email,favourite_colour\n", "people.csv:1: unknown column(s) 'favourite_colour'"),
        (b"email,last_name\na@example.com,M\xfcller\n", "people.csv:2: is not UTF-8"),
    ],
)
def test_a_bad_file_is_a_clear_error(
    tmp_path: Path, content: bytes | None, message: str, clean_devorg: DevOrg, redis_url: str
) -> None:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url, topics=[])
    path = tmp_path / "people.csv"
    if content is not None:
        path.write_bytes(content)
    try:
        done = _run(b, "leads", str(path))
    finally:
        b.close()
    assert done.returncode == 1
    assert message in done.stderr and done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr


def test_import_sales_with_push_sends_them_through_the_outbound_engine(
    bridge: Bridge, tmp_path: Path
) -> None:
    config = yaml.safe_load(bridge.config_path.read_text())
    config["orgs"][ORG]["writeback"] = {"sales": {"create_price_entries": True}}
    bridge.write_config(config)
    sf = bridge.org.sf("sales")
    sf.Product2.create({"Name": "Gold plan", "ProductCode": "GOLD"})
    [bakery] = _create(sf, "Account", [{"Name": "Bluebird Bakery", "Phone": "(415) 555-0100"}])
    with bridge.store.session() as s:
        program = Program(key="main", name="Main")
        s.add(program)
        s.flush()
        for n, name in ((1, "Baker"), (2, "Newman")):
            s.add(Referral(public_id=f"R-p{n}", program_id=program.id, last_name=name))
    item = {"product_code": "GOLD", "quantity": "2", "unit_price": "50"}
    rows = [
        {"sale_id": "P-1", "referral_id": "R-p1", "business_name": "Bluebird Bakery",
         "phone": "415 555 0100", "closed_at": "2026-04-03", **item},
        {"sale_id": "P-2", "referral_id": "R-p2", "business_name": "Corner Shop",
         "closed_at": "2026-04-04", **item},
    ]  # fmt: skip
    path = _write_csv(tmp_path / "sales.csv", list(rows[0]), rows)

    done = _run(bridge, "sales", str(path), "--push")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "connected:  2 (2 new sales)" in done.stdout
    assert "2 sale push(es) queued for sending" in done.stdout
    worker = bridge.start("worker", "worker", "--burst")
    assert worker.wait(120) == 0, bridge.log("worker")

    with bridge.store.session() as s:
        pushes = s.scalars(select(Push).where(Push.kind == "sale").order_by(Push.id)).all()
        assert [p.state for p in pushes] == ["sent", "sent"], [p.error_message for p in pushes]
        baker = s.scalar(select(Referral).where(Referral.public_id == "R-p1"))
        assert baker is not None and baker.sf_account_id == bakery
    opps = sf.query_all("SELECT AccountId, StageName FROM Opportunity ORDER BY Name")["records"]
    assert [o["StageName"] for o in opps] == ["Closed Won", "Closed Won"]
    names = {a["Id"]: a["Name"] for a in sf.query_all("SELECT Id, Name FROM Account")["records"]}
    assert sorted(names.values()) == ["Bluebird Bakery", "Corner Shop"]  # connected, not doubled
    assert names[opps[0]["AccountId"]] == "Bluebird Bakery"
    items = sf.query_all("SELECT Quantity FROM OpportunityLineItem")["records"]
    assert [i["Quantity"] for i in items] == [2, 2]


def test_a_terminal_gets_a_progress_bar(bridge: Bridge, tmp_path: Path) -> None:
    _create(bridge.org.sf("sales"), "Lead", [
        {"LastName": f"Tty{i}", "Company": "Co", "Email": f"tty{i}@import.test"} for i in range(3)
    ])  # fmt: skip
    rows = [{"email": f"tty{i}@import.test"} for i in range(3)]
    path = _write_csv(tmp_path / "people.csv", ["email"], rows)
    main, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [*sfbridge_command(), "import", "leads", str(path)],
            env=bridge.env, cwd=bridge.root, stdout=subprocess.PIPE, stderr=terminal,
            text=True, timeout=120,
        )  # fmt: skip
        os.close(terminal)
        shown = b""
        while chunk := _read(main):
            shown += chunk
    finally:
        os.close(main)
    assert done.returncode == 0, done.stdout
    assert "connected:  3 (3 new referrals)" in done.stdout
    text = shown.decode()
    assert re.search(r"people\.csv\s+\[#+\]\s+100%", text), text
    assert "of 3 rows" not in text  # the plain lines are for logs, not terminals


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # the terminal's other end is closed: all was read
        return b""


def test_a_row_the_database_refuses_fails_alone(bridge: Bridge, tmp_path: Path) -> None:
    _create(bridge.org.sf("sales"), "Lead", [
        {"LastName": f"Db{i}", "Company": "Co", "Email": f"db{i}@import.test"} for i in range(4)
    ])  # fmt: skip
    with bridge.store.session() as s:
        other = Program(key="other", name="Other")
        s.add(other)
        s.flush()
        s.add(Referral(public_id="R-other", program_id=other.id, external_id="X-taken"))
    rows = [{"email": f"db{i}@import.test", "external_id": f"X-{i}"} for i in range(4)]
    rows[2]["external_id"] = "X-taken"  # external ids are unique across programs
    path = _write_csv(tmp_path / "people.csv", ["email", "external_id"], rows)

    done = _run(bridge, "leads", str(path))
    assert done.returncode == 1
    assert _summary(done.stdout) | {"API calls": 0} == {
        "rows read": 4, "connected": 3, "unchanged": 0, "skipped": 0, "failed": 1,
        "API calls": 0,
    }, done.stdout  # fmt: skip
    [(line, (outcome, reason))] = _report(tmp_path / "people.errors.csv").items()
    assert (line, outcome) == (4, "failed") and reason.startswith("could not be saved: ")
    with bridge.store.session() as s:
        made = s.scalars(select(Referral.external_id).where(Referral.sf_lead_id.is_not(None)))
        assert sorted(made) == ["X-0", "X-1", "X-3"]
