"""Normalized keys for matching people: one place, used when referrals and members are stored
(their ``*_key`` columns, ``referral_keys`` / ``member_keys``), when sales entries are matched
and when the API looks people up, so every side always agrees. Pure, and a leaf: it imports
nothing of the bridge, so the store and the receiver's pure core both build on it.

Decisions (the spec leaves them open):

- **Email**: trimmed and lower-cased. For Gmail only (``gmail.com`` / ``googlemail.com``,
  which Google treats as one mailbox) dots in the local part and a ``+tag`` are dropped and the
  domain becomes ``gmail.com``, because Google delivers all of those spellings to the same
  mailbox. Other domains keep dots and ``+`` as written: at most company domains
  ``j.smith`` and ``jsmith`` are different people, and plus-addressing is not universal.
- **Name**: Unicode-normalized (NFKC), accents stripped, case-folded, punctuation removed,
  tokens sorted and joined by one space — so ``"Smith, José"`` and ``"jose smith"`` meet.
- **Name blocks** (the fuzzy-match blocking keys): the surname coded three ways — Soundex,
  reverse Soundex, first+last two letters — each with the first name's Soundex
  (``"S530:J500"``). Spelling variants (Jon/John, Smyth/Smith) share the first; a one-letter
  typo rarely changes all three. The matcher looks them up in both name orders, so swapped
  first/last names are found too.
- **Phone**: digits only, the last 10 (drops country codes and formatting); fewer than 7 digits
  is not a usable phone and gives no key.
- **Company**: like a name, with legal-form words (Inc, LLC, GmbH…) dropped.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_LEGAL_FORMS = frozenset(
    {
        "ag",
        "bv",
        "co",
        "company",
        "corp",
        "corporation",
        "gmbh",
        "inc",
        "incorporated",
        "limited",
        "llc",
        "llp",
        "lp",
        "ltd",
        "nv",
        "plc",
        "pty",
        "sa",
        "sarl",
        "sas",
        "srl",
        "the",
    }
)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value).strip()


def fold(value: Any) -> str:
    """Case-folded text without accents or punctuation, single-spaced."""
    return _fold(_text(value))


@functools.lru_cache(maxsize=16384)
def _fold(text: str) -> str:
    # Cached: every entry folds the same names several times over (name key, three blocking
    # keys, each with first and last name), and a batch often repeats names.
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _NON_WORD.sub(" ", text.casefold()).replace("_", " ")
    return " ".join(text.split())


def email_key(email: Any) -> str | None:
    """The normalized email, or None when the value is not an email address."""
    text = _text(email).lower()
    if text.count("@") != 1:
        return None
    local, domain = text.split("@")
    if not local or "." not in domain:
        return None
    if domain in _GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
        if not local:
            return None
    return f"{local}@{domain}"


def full_name(first: Any, last: Any, name: Any = None) -> str:
    """A display name from first/last (falling back to a full ``Name`` field)."""
    joined = " ".join(p for p in (_text(first), _text(last)) if p)
    return joined or _text(name)


def name_key(first: Any, last: Any, name: Any = None) -> str | None:
    """Token-sorted folded full name, or None when there is no name."""
    tokens = sorted(fold(full_name(first, last, name)).split())
    return " ".join(tokens) or None


def company_key(company: Any) -> str | None:
    tokens = sorted(t for t in fold(company).split() if t not in _LEGAL_FORMS)
    return " ".join(tokens) or None


def phone_key(phone: Any) -> str | None:
    digits = re.sub(r"\D", "", _text(phone))
    if len(digits) < 7:
        return None
    return digits[-10:]


_SOUNDEX = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}


@functools.lru_cache(maxsize=16384)
def soundex(word: str) -> str:
    """American Soundex of a folded word ("" when it has no letters). Cached like _fold: the
    same names come back entry after entry."""
    letters = [ch for ch in fold(word) if "a" <= ch <= "z"]
    if not letters:
        return ""
    code = letters[0].upper()
    previous = _SOUNDEX.get(letters[0], "")
    for ch in letters[1:]:
        digit = _SOUNDEX.get(ch, "")
        if digit and digit != previous:
            code += digit
            if len(code) == 4:
                break
        if ch not in "hw":  # h and w do not separate letters with the same code
            previous = digit
    return code.ljust(4, "0")


def _split_name(first: Any, last: Any, name: Any) -> tuple[str, str]:
    f, la = fold(first), fold(last)
    if not f and not la:
        tokens = fold(name).split()
        if not tokens:
            return "", ""
        return " ".join(tokens[:-1]), tokens[-1]
    return f, la


def affix(word: str) -> str:
    """A surname's first two and last two letters (``johnson`` -> ``joon``): unchanged by a
    typo anywhere in between, which Soundex (start) and reverse Soundex (end) both miss."""
    letters = "".join(ch for ch in fold(word) if ch.isalnum())
    return letters if len(letters) <= 4 else letters[:2] + letters[-2:]


BLOCK_KINDS = ("soundex", "reverse", "affix", "prefix")
"""The kinds of name blocks (`name_blocks`), in the order `all_name_blocks` gives them."""


def name_blocks(first: Any, last: Any, name: Any = None, *, kind: str = "soundex") -> list[str]:
    """Blocking keys for fuzzy name lookup: ``<surname code>:<Soundex of first name>``, then the
    same with first and last name swapped.

    The surname code is its Soundex (``kind="soundex"``: spelling variants like Smith/Smyth
    meet), its reverse Soundex (``"reverse"``: Soundex only looks at a name's first letters, so
    a typo there changes it while the reverse code holds), or its first and last two letters
    (``"affix"``: a typo in the middle of a long name), or its first three letters
    (``"prefix"``: a typo late in a short name, which changes the other three). A one-letter
    surname typo rarely changes all four, so looking up all four finds most typos. Multi-word
    names use their last word for the surname and their first word for the first name.
    """
    return _name_blocks(first, last, name, (kind,))[0]


def all_name_blocks(first: Any, last: Any, name: Any = None) -> list[list[str]]:
    """`name_blocks` of every kind of `BLOCK_KINDS`, the name folded and split once."""
    return _name_blocks(first, last, name, BLOCK_KINDS)


def _surname_code(word: str, kind: str) -> str:
    if kind == "reverse":
        return soundex(word[::-1])
    if kind == "affix":
        return affix(word)
    if kind == "prefix":
        return "".join(ch for ch in word if ch.isalnum())[:3]
    return soundex(word)


def _name_blocks(first: Any, last: Any, name: Any, kinds: tuple[str, ...]) -> list[list[str]]:
    f, la = _split_name(first, last, name)
    if not la and not f:
        return [[] for _kind in kinds]
    f_word = f.split()[0] if f else ""
    l_word = la.split()[-1] if la else ""
    first_code, last_code = soundex(f_word), soundex(l_word)
    out = []
    for kind in kinds:
        keys = [f"{_surname_code(l_word, kind)}:{first_code}"]
        if f_word and l_word:
            swapped = f"{_surname_code(f_word, kind)}:{last_code}"  # first and last swapped
            if swapped != keys[0]:
                keys.append(swapped)
        out.append(keys)
    return out


def referral_keys(
    *,
    first_name: Any = None,
    last_name: Any = None,
    email: Any = None,
    company: Any = None,
    phone: Any = None,
) -> dict[str, str | None]:
    """The normalized ``*_key`` columns of a Referral; set them whenever a referral is written.

    Usage: ``Referral(first_name=..., ..., **referral_keys(first_name=..., ...))``.
    """
    blocks, rblocks, ablocks, pblocks = all_name_blocks(first_name, last_name)
    return {
        "email_key": email_key(email),
        "name_key": name_key(first_name, last_name),
        "name_block": blocks[0] if blocks else None,
        "name_rblock": rblocks[0] if rblocks else None,
        "name_ablock": ablocks[0] if ablocks else None,
        "name_pblock": pblocks[0] if pblocks else None,
        "company_key": company_key(company),
        "phone_key": phone_key(phone),
    }


def member_keys(*, email: Any = None) -> dict[str, str | None]:
    """The normalized columns of a Member; set them whenever a member is written."""
    return {"email_key": email_key(email)}


def code_key(code: Any) -> str | None:
    """Referral codes compare trimmed and case-insensitively (people retype them)."""
    text = _text(code).casefold()
    return text or None


# Common English nicknames and the names they stand for: a person entered as "Bob" in
# Salesforce and referred as "Robert". Each group's names are interchangeable first names.
_NICKNAME_GROUPS = (
    "robert bob bobby rob robbie", "william bill billy will willy liam",
    "elizabeth liz lizzie beth betsy eliza", "richard dick rick ricky rich",
    "james jim jimmy jamie", "michael mike mikey mick", "joseph joe joey",
    "thomas tom tommy", "charles charlie chuck chas", "christopher chris kit",
    "daniel dan danny", "matthew matt", "anthony tony", "margaret maggie peggy meg",
    "jennifer jen jenny", "katherine kathryn catherine kate katie kathy cathy",
    "patricia pat patty trish", "steven stephen steve", "andrew andy drew",
    "kenneth ken kenny", "edward ed eddie ted", "samuel sam sammy", "alexander alex",
    "benjamin ben benny", "nicholas nick nicky", "jonathan jon", "deborah debbie deb",
    "rebecca becky becca", "timothy tim timmy", "gregory greg", "susan sue susie",
    "barbara barb", "jessica jess jessie", "joshua josh", "zachary zach zack",
    "victoria vicky tori", "frances fran", "lawrence larry", "raymond ray",
    "gerald gerry jerry", "donald don donny", "ronald ron ronnie", "albert al bert",
    "abigail abby", "madison maddie", "alexandra sasha",
)  # fmt: skip
_NICKNAMES: dict[str, frozenset[str]] = {}
for _group in _NICKNAME_GROUPS:
    _names = frozenset(_group.split())
    for _name in _names:
        _NICKNAMES[_name] = _NICKNAMES.get(_name, frozenset()) | _names


def first_name_variants(first: Any) -> list[str]:
    """The other first names the same person may go by (``Bob`` -> ``robert``, ``rob``, …),
    folded; [] for a name without nicknames."""
    words = fold(first).split()
    if not words:
        return []
    return sorted(_NICKNAMES.get(words[0], frozenset()) - {words[0]})
