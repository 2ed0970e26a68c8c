"""The import files: header, encoding and row checks (no org, no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import UsageError
from bridge.imports import csvfile

LEAD_ID = "00Q000000000001EAA"
CONTACT_ID = "003000000000001AAA"


def _file(tmp_path: Path, text: str | bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_a_leads_file_with_a_byte_order_mark_and_loose_header_names(tmp_path: Path) -> None:
    path = _file(tmp_path, "\ufeff Email ,SF_Lead_Id,first_name\r\nann@example.com,,Ann\r\n")
    data = csvfile.read(path, "leads")
    assert data.columns == ["email", "sf_lead_id", "first_name"]
    [row] = data.rows
    assert (row.line, row.values, row.problem) == (
        2,
        {"email": "ann@example.com", "first_name": "Ann"},
        None,
    )


def test_lines_count_quoted_newlines_and_blank_rows_are_left_out(tmp_path: Path) -> None:
    text = 'email,company\na@example.com,"Two\nlines"\n,\n\nb@example.com,B\n'
    rows = csvfile.read(_file(tmp_path, text), "leads").rows
    assert [(r.line, r.values["email"]) for r in rows] == [
        (2, "a@example.com"),
        (6, "b@example.com"),
    ]
    assert rows[0].values["company"] == "Two\nlines"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty; the first line must name the columns"),
        ("email,colour\n", "unknown column(s) 'colour'"),
        ("email,Email\n", "column(s) email given more than once"),
        ("first_name,last_name\n", "needs at least one of the columns sf_lead_id, sf_contact_id"),
    ],
)
def test_a_wrong_header_refuses_the_file_with_its_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = _file(tmp_path, content)
    with pytest.raises(UsageError) as err:
        csvfile.read(path, "leads")
    assert message in err.value.message
    assert err.value.message.startswith(str(path))


def test_a_sales_file_without_its_required_columns(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="missing required column\\(s\\) closed_at"):
        csvfile.read(_file(tmp_path, "sale_id,business_name,email\n"), "sales")


def test_a_file_that_is_not_utf8_names_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "email,last_name\na@example.com,Smith\nb@example.com,M\xfcller\n".encode("latin-1"),
    )
    with pytest.raises(UsageError) as err:
        csvfile.read(path, "leads")
    assert err.value.message == (
        f"{path}:3: is not UTF-8 (byte 0xfc cannot be read); save it as 'CSV UTF-8' and try again"
    )


def test_a_missing_file_and_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        csvfile.read(tmp_path / "nope.csv", "leads")
    with pytest.raises(UsageError, match="is a folder"):
        csvfile.read(tmp_path, "leads")


def test_unbalanced_quotes_are_not_csv(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not valid CSV"):
        csvfile.read(_file(tmp_path, 'email\n"a@example.com\n'), "leads")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"email": "a@example.com"}, None),
        ({"sf_lead_id": LEAD_ID}, None),
        ({"sf_lead_id": LEAD_ID[:15]}, None),
        ({"first_name": "Ann"}, "give one of sf_lead_id, sf_contact_id, email"),
        ({"email": "not an email"}, "email 'not an email' is not an email address"),
        ({"sf_lead_id": "00Q123"}, "sf_lead_id: '00Q123' is not a Salesforce id (15 or 18 letters"),
        (
            {"sf_lead_id": CONTACT_ID},
            f"sf_lead_id: '{CONTACT_ID}' is a Contact id (Lead ids start with 00Q)",
        ),
        (
            {"sf_contact_id": "a0B000000000001EAA"},
            "sf_contact_id: 'a0B000000000001EAA' is not a Contact id (Contact ids start with 003)",
        ),
        ({"email": "a@example.com", "company": "x" * 256}, "company is longer than 255"),
        (
            {"sf_lead_id": LEAD_ID, "sf_contact_id": CONTACT_ID},
            "give sf_lead_id or sf_contact_id, not",
        ),
        (
            {"sf_lead_id": "00Q000000000001AAB"},
            "sf_lead_id: '00Q000000000001AAB' is not a Salesforce id: its last three characters",
        ),
    ],
)
def test_lead_rows(values: dict[str, str], problem: str | None) -> None:
    found = csvfile.check_row("leads", values)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


SALE = {"sale_id": "s-1", "business_name": "Bluebird", "closed_at": "2026-04-03", "email": "a@b.co"}


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({}, None),
        ({"closed_at": "2026-04-03T10:00:00Z", "amount": "99.50"}, None),
        ({"product_code": "GOLD", "quantity": "3", "unit_price": "99"}, None),
        ({"closed_at": "April 3rd"}, "closed_at 'April 3rd' is not a date"),
        ({"amount": "1,200"}, "amount '1,200' is not a number (write 1234.50)"),
        ({"amount": "NaN"}, "amount 'NaN' is not a number"),
        ({"product_code": "GOLD"}, "an item needs product_code or product_name, quantity and"),
        ({"sale_id": ""}, "sale_id is empty"),
        ({"sf_account_id": LEAD_ID}, f"sf_account_id: '{LEAD_ID}' is a Lead id"),
    ],
)
def test_sale_rows(extra: dict[str, str], problem: str | None) -> None:
    values = {k: v for k, v in {**SALE, **extra}.items() if v}
    found = csvfile.check_row("sales", values)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


def test_a_row_with_more_cells_than_columns_fails_alone(tmp_path: Path) -> None:
    rows = csvfile.read(
        _file(tmp_path, "email\na@example.com,extra\nb@example.com\n"), "leads"
    ).rows
    assert [r.problem for r in rows] == ["2 cells but 1 columns in the header", None]


def test_a_date_without_offset_is_utc() -> None:
    when = csvfile.closed_at("2026-04-03")
    assert when is not None and when.isoformat() == "2026-04-03T00:00:00+00:00"
