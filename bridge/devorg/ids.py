"""Salesforce record ids: 15-character case-sensitive ids and their 18-character case-safe form.

An id is a 3-character key prefix (the object), a 2-character instance/pod part, a reserved
character and a 9-character base-62 number. The 18-character form appends three checksum
characters: for each 5-character chunk, a bit per uppercase letter, mapped to A-Z0-5.
"""

from __future__ import annotations

import re

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-5]{3})?$")
# "8d" stands in for the pod; "0" is the reserved character.
POD = "8d0"


def checksum(id15: str) -> str:
    out = []
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX[bits])
    return "".join(out)


def make_id(prefix: str, number: int) -> str:
    """The 18-character id number `number` of the object with key prefix `prefix`."""
    digits = []
    n = number
    for _ in range(9):
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    id15 = prefix + POD + "".join(reversed(digits))
    return id15 + checksum(id15)


def normalize(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None if it is not a valid id.

    An 18-character id is matched case-insensitively (that is what the suffix is for), so its
    case is repaired from the suffix.
    """
    if not isinstance(value, str) or not _ID_RE.match(value):
        return None
    if len(value) == 15:
        return value + checksum(value)
    suffix = value[15:].upper()
    if checksum(value[:15]) == suffix:
        return value[:15] + suffix
    # Repair case from the checksum bits (case-insensitive 18-character ids are valid input).
    chars = list(value[:15].lower())
    for chunk in range(3):
        bits = _SUFFIX.find(suffix[chunk])
        if bits < 0:
            return None
        for i in range(5):
            if bits & (1 << i):
                chars[chunk * 5 + i] = chars[chunk * 5 + i].upper()
    id15 = "".join(chars)
    if checksum(id15) != suffix:
        return None
    return id15 + suffix
