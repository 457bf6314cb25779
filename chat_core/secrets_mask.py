"""The one place that hides secrets before text is shown or logged.

Secrets reach text in three ways: a password in a URL (`http://user:token@host`,
`postgresql://app:pw@db/chat`), a key in a URL's query (`?api_key=...`), and a value that is
secret wherever it appears (LLM_API_KEY, the SHARE_AUTH passwords), for instance echoed back in
an LLM server's error message. `mask_url` handles one URL, `mask_secrets` any text: every URL in
it, every remembered secret value and any `Bearer`/`Basic` credential. Everything that shows a
URL to a user or writes one to the log goes through them, and `SecretsFilter` applies
`mask_secrets` to every log record as a safety net for what a library logs on its own.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# Secret values shorter than this are not remembered: masking a two-letter key everywhere
# would garble the log, and such a key protects nothing anyway.
MIN_SECRET_CHARS = 4

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s<>\"'`]+")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;][^=&;#]*(?:key|token|password|passwd|pwd|secret|signature|sig|auth)[^=&;#]*=)"
    r"[^&;#]*")
# A credential after "Bearer"/"Basic": 12 or more token characters, one of them a digit or a
# symbol, so that prose such as "basic understanding" is left alone.
_AUTH_HEADER = re.compile(
    r"(?i)\b(bearer|basic)(\s+)(?=[A-Za-z._~]*[0-9+/=\-])[A-Za-z0-9._~+/=\-]{12,}")

_known: set[str] = set()
_known_lock = threading.Lock()


def remember_secrets(values: Iterable[str | None]) -> None:
    """Values to mask wherever they appear (the API key, the SHARE_AUTH passwords). Kept for
    the life of the process: a secret once configured stays one."""
    with _known_lock:
        for value in values:
            if value and len(value) >= MIN_SECRET_CHARS and value != "EMPTY":
                _known.add(value)


def mask_url(url: str) -> str:
    """The URL with its password and secret-looking query values replaced by ***; the user name,
    host, port and path stay, so that the URL still says where it points."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    # An http(s) URL with a user part only carries a token there (http://TOKEN@host).
    token_user = not password and parts.username and parts.scheme.lower() in ("http", "https")
    if password or token_user:
        host = parts.netloc.rsplit("@", 1)[1]
        userinfo = f"{parts.username or ''}:{MASK}" if password else MASK
        parts = parts._replace(netloc=f"{userinfo}@{host}")
    masked = urlunsplit(parts) if password or token_user else url
    return _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, masked)


def mask_secrets(text: str) -> str:
    """`text` with every URL masked (mask_url), every remembered secret value replaced by ***
    and the credential of any `Bearer`/`Basic` header value hidden."""
    if not text:
        return text
    masked = _URL.sub(lambda m: mask_url(m.group(0)), text)
    masked = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + MASK, masked)
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)  # longest first: no partial leftovers
    for value in known:
        if value in masked:
            masked = masked.replace(value, MASK)
    return masked


def mask_record(record: logging.LogRecord) -> None:
    """Mask a log record in place: its formatted message replaces msg/args, and its exception
    and stack texts are formatted now and masked (formatters reuse `exc_text`)."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: let the handler report it as usual
        return
    masked = mask_secrets(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_secrets(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_secrets(record.stack_info)


class SecretsFilter(logging.Filter):
    """Masks secrets in every record that passes the handler it is installed on."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def install_log_masking() -> None:
    """Mask secrets in every log record of the process, once: a SecretsFilter on each root
    handler, and a record factory for the loggers that do not reach the root handlers (uvicorn
    and DBOS log through handlers of their own, set up after this runs)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretsFilter) for f in handler.filters):
            handler.addFilter(SecretsFilter())
    previous = logging.getLogRecordFactory()
    if getattr(previous, "masks_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        mask_record(record)
        return record

    factory.masks_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


__all__ = ["mask_url", "mask_secrets", "remember_secrets", "mask_record", "SecretsFilter",
           "install_log_masking", "MASK"]
