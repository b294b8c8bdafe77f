"""Removal of secrets from connection strings and from any text that may contain one.

Every DSN form libpq accepts is covered: URI userinfo (``postgresql://u:secret@h``),
the URI query parameter (``?password=secret``) and keyword/value strings
(``password=secret``, ``sslpassword='with spaces'``: every key ending in ``password``).
The userinfo of a URL of any other scheme (``http://u:secret@alertmanager``) loses its
password too. The function works on free text, so a log line or an exception message that
embeds a DSN or a URL is cleaned as well.
"""

from __future__ import annotations

import logging
import re

__all__ = ["MASK", "RedactingFilter", "redact"]

MASK = "***"

# scheme://user:secret@host (postgresql://, http://, ...) — the password runs to the last
# "@" before whitespace; a password holding an unescaped "@" is thus still hidden entirely.
_URI_USERINFO = re.compile(
    r"(?P<head>(?<![\w+.-])[a-z][a-z0-9+.-]*://[^:@/\s?#]*):(?P<secret>[^\s]*)@", re.IGNORECASE
)
# ...?sslmode=require&password=secret (or &sslpassword=) — a URI parameter ends at "&",
# "#" or whitespace.
_URI_PARAM = re.compile(r"(?P<head>[?&]\w*password=)(?P<secret>[^&#\s]*)", re.IGNORECASE)
# password=secret / sslpassword = 'se cret' (keyword/value conninfo; quotes may hold \'),
# and PGPASSWORD=secret as printed by an environment dump: every key ending in "password".
_KEYWORD = re.compile(
    r"(?<![?&\w])(?P<head>\w*password\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'?|[^\s']*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Return *text* with every password of every DSN form and URL replaced by ``***``."""
    if not text or ("password" not in text.lower() and "://" not in text):
        return text
    text = _URI_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _URI_PARAM.sub(lambda m: f"{m['head']}{MASK}", text)
    return _KEYWORD.sub(lambda m: f"{m['head']}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the formatted message and exception text of a record.

    Installed on pgperf's handlers, so a DSN that reaches a log line through a library
    message or a traceback is cleaned even where the caller forgot to.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            # The format string and its arguments stay available to formatters that name
            # fields after them (pgperf.logs), which redact every field they write.
            record._pgperf_template = (record.msg, record.args)
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, and drop the live exception so that
            # handlers print the cleaned text instead of formatting it again.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
