"""Normalized matching keys (one definition, used when referrals are written and matched)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge import matchkeys as mk


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("j.a.n.e+referrals@gmail.com", "jane@gmail.com"),
        ("Jane@GoogleMail.com", "jane@gmail.com"),
        ("jane+x@example.com", "jane+x@example.com"),  # + kept outside Gmail
        ("jane.doe@example.com", "jane.doe@example.com"),  # dots kept outside Gmail
        ("not-an-email", None),
        ("a@b@c.com", None),
        ("", None),
        (None, None),
    ],
)
def test_email_key(raw: Any, key: str | None) -> None:
    assert mk.email_key(raw) == key


@pytest.mark.parametrize(
    ("first", "last", "name", "key"),
    [
        ("José", "Smith", None, "jose smith"),
        ("SMITH,", "jose", None, "jose smith"),
        (None, None, "Zoë  O'Brien", "brien o zoe"),
        ("Ｊｏｈｎ", "Doe", None, "doe john"),  # full-width letters
        (None, None, None, None),
        ("", "  ", "", None),
    ],
)
def test_name_key(first: Any, last: Any, name: Any, key: str | None) -> None:
    assert mk.name_key(first, last, name) == key


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("+1 (415) 555-0100", "4155550100"),
        ("0044 20 7946 0958", "2079460958"),
        ("555-0100", "5550100"),
        ("12345", None),
        (None, None),
    ],
)
def test_phone_key(raw: Any, key: str | None) -> None:
    assert mk.phone_key(raw) == key


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Acme, Inc.", "acme"),
        ("The Acme Company LLC", "acme"),
        ("Société Générale SA", "generale societe"),
    ],
)
def test_company_key(raw: str, key: str) -> None:
    assert mk.company_key(raw) == key


@pytest.mark.parametrize(
    ("word", "code"),
    [
        ("Robert", "R163"),
        ("Rupert", "R163"),
        ("Ashcraft", "A261"),
        ("Tymczak", "T522"),
        ("Pfister", "P236"),
        ("Smith", "S530"),
        ("Smyth", "S530"),
        ("Lee", "L000"),
        ("", ""),
    ],
)
def test_soundex(word: str, code: str) -> None:
    assert mk.soundex(word) == code


def test_name_blocks_meet_across_typos_and_swaps() -> None:
    stored = mk.referral_keys(first_name="John", last_name="Smith")["name_block"]
    assert stored in mk.name_blocks("Jon", "Smyth")
    assert stored in mk.name_blocks("Smith", "John")  # first/last swapped
    assert stored not in mk.name_blocks("Mary", "Smith")


@pytest.mark.parametrize(
    ("typo", "forward", "reverse", "affix"),
    [
        ("Johnson", True, True, True),
        ("Gohnson", False, True, False),  # typo early: only reverse Soundex holds
        ("Johnsno", True, False, False),  # typo late: only Soundex holds
        ("Jopnson", False, False, True),  # typo in the middle: only the affix holds
    ],
)
def test_each_block_catches_typos_the_others_miss(
    typo: str, forward: bool, reverse: bool, affix: bool
) -> None:
    stored = mk.referral_keys(first_name="Ann", last_name="Johnson")
    assert (stored["name_block"] in mk.name_blocks("Ann", typo)) is forward
    assert (stored["name_rblock"] in mk.name_blocks("Ann", typo, kind="reverse")) is reverse
    assert (stored["name_ablock"] in mk.name_blocks("Ann", typo, kind="affix")) is affix


def test_referral_keys_fill_every_key_column() -> None:
    keys = mk.referral_keys(
        first_name="Ana",
        last_name="Núñez",
        email="Ana@Ex.com",
        company="Ex Ltd",
        phone="555 0100 22",
    )
    assert keys == {
        "email_key": "ana@ex.com",
        "name_key": "ana nunez",
        "name_block": "N520:A500",
        "name_rblock": "Z550:A500",  # "zenun": reverse Soundex
        "name_ablock": "nuez:A500",
        "name_pblock": "nun:A500",
        "company_key": "ex",
        "phone_key": "555010022",
    }


def test_a_late_typo_in_a_short_surname_keeps_its_prefix_block() -> None:
    """Rosada -> Rosava changes the Soundex, reverse Soundex and affix keys; the first three
    letters still meet."""
    kinds = ("soundex", "reverse", "affix")
    for kind in kinds:
        assert not set(mk.name_blocks("Charlotte", "Rosada", kind=kind)) & set(
            mk.name_blocks("Charlotte", "Rosava", kind=kind)
        )
    stored = mk.referral_keys(first_name="Charlotte", last_name="Rosada")
    assert stored["name_pblock"] in mk.name_blocks("Charlotte", "Rosava", kind="prefix")


@pytest.mark.parametrize(
    ("first", "last", "name", "blocks"),
    [
        ("John", "Smith", None, [["S530:J500", "J500:S530"], ["H352:J500", "N200:S530"],
                                 ["smth:J500", "john:S530"], ["smi:J500", "joh:S530"]]),
        ("José", "García-López", None, [["L120:J200", "J200:L120"], ["Z140:J200", "E220:L120"],
                                        ["loez:J200", "jose:L120"], ["lop:J200", "jos:L120"]]),
        (None, "Leadb200-250", None, [[":"], [":"], ["250:"], ["250:"]]),
        ("Ann", None, None, [[":A500"], [":A500"], [":A500"], [":A500"]]),
        (None, None, "Mary Ann O'Neil", [["N400:M600", "M600:N400"], ["L500:M600", "Y650:N400"],
                                         ["neil:M600", "mary:N400"], ["nei:M600", "mar:N400"]]),
        ("Jo", "Jo", None, [["J000:J000"], ["O200:J000"], ["jo:J000"], ["jo:J000"]]),
        (None, None, None, [[], [], [], []]),
    ],
)  # fmt: skip
def test_all_name_blocks_are_each_kinds_blocks(first, last, name, blocks):
    # The four kinds at once (the name folded and split once) give what each kind gives alone.
    assert mk.all_name_blocks(first, last, name) == blocks
    assert [mk.name_blocks(first, last, name, kind=k) for k in mk.BLOCK_KINDS] == blocks
