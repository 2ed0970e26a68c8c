"""Keep secrets out of log lines: a redactor applied to every log record of the process.

The bridge never logs a token or key on purpose (reprs hide them, messages name ids only).
This is the second line of defence, for a library's debug line or an exception text that
carries one: access tokens (``Bearer ...``, Salesforce session ids ``00D...!...``), OAuth
parameters (``refresh_token=``, ``client_secret=``, ``assertion=``, ``code=``...), passwords
and PEM private keys are replaced by ``***`` when the record is created, before any handler
(file, console, pytest's caplog) sees it.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

MASK = "***"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
            re.DOTALL,
        ),
        "[private key redacted]",
    ),
    (re.compile(r"(?i)\b(bearer|oauth)\s+[A-Za-z0-9._~+/!=-]{8,}"), rf"\1 {MASK}"),
    # A Salesforce access token / session id: the org id, '!', then the opaque part.
    (re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._-]+"), MASK),
    # key=value in URLs and form bodies, "key": "value" in JSON, key: value in text.
    (
        re.compile(
            r"(?i)\b(access_token|refresh_token|id_token|client_secret|assertion|"
            r"code_verifier|password|session_?id|sessionId|secret)"
            r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)([^\"'&\s,;}\\]+)"
        ),
        rf"\1\2{MASK}",
    ),
    # The authorization code travels as a URL parameter only.
    (re.compile(r"([?&]code=)[^&\s\"']+"), rf"\1{MASK}"),
]


def redact(text: str) -> str:
    """`text` with every token, secret parameter and private key replaced by a mask."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_lock = threading.Lock()
_installed = False


def install() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


_formatter = logging.Formatter()


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the handler's to report
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = redact(_formatter.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
