"""Removal of secrets from connection strings, from any text that may contain one, and from
statement texts.

:func:`redact`: every DSN form libpq accepts is covered: URI userinfo
(``postgresql://u:secret@h``), the URI query parameter (``?password=secret``) and
keyword/value strings (``password=secret``, ``sslpassword='with spaces'``: every key ending
in ``password``). The userinfo of a URL of any other scheme (``http://u:secret@alertmanager``)
loses its password too. The function works on free text, so a log line or an exception
message that embeds a DSN or a URL is cleaned as well.

:func:`redact_statement`: pg_stat_statements replaces the constants of a query by ``$1``,
``$2``... but keeps the text of a utility statement (``CREATE ROLE``, ``ALTER USER
MAPPING``, ``DO``, ``CREATE FUNCTION``; ``SET`` and ``EXPLAIN`` before PostgreSQL 16) as it
was sent, literals included. The statement is split into tokens by :mod:`pgperf._sqllex`
(so a quote inside a comment, a dollar-quoted body or an ``E'...'`` escape cannot mislead
it), and these literals are replaced by ``'***'``:

* a literal after a name that says it holds a secret, with ``=`` or ``TO`` between them or
  not: ``PASSWORD 'x'`` (``CREATE/ALTER ROLE/USER/GROUP``, ``ENCRYPTED PASSWORD``),
  ``OPTIONS (password 'x')`` of a server or foreign table, ``SET app.api_key = 'x'``,
  ``ALTER ROLE r SET app.secret TO 'x'``; the names are those matching ``SECRET_NAME``;
* every literal in the ``OPTIONS (...)`` of ``CREATE/ALTER USER MAPPING`` (user mappings
  exist to hold credentials, and each foreign-data wrapper names them its own way);
* every literal argument of pgcrypto's functions that take a key, a password or plaintext
  (``CRYPTO_FUNCTIONS``: ``pgp_sym_encrypt(data, 'key')``, ``crypt('pw', salt)``...);
* inside any literal or comment, what :func:`redact` removes: a conninfo's
  ``password=...`` (``dblink_connect('... password=x')``, ``CREATE SUBSCRIPTION ...
  CONNECTION '...'``, ``ALTER SYSTEM SET primary_conninfo = '...'``) and a URL's
  ``user:password@``;
* inside a literal that is itself SQL (a ``DO`` block, a function body, a string given to
  ``EXECUTE``) and inside a comment (``/*password='x'*/`` annotations): all of the above, and the literals that follow a text ending in a secret's
  name (``EXECUTE 'ALTER ROLE r PASSWORD ' || quote_literal('x')``,
  ``format('... PASSWORD %L', 'x')``), up to the end of the expression.

A literal after ``PASSWORD`` that holds a backslash is masked as far as it would reach if
``standard_conforming_strings`` were off, so that setting cannot make part of it survive.
A statement without any of these is returned unchanged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ._sqllex import COMMENT, NAME, OP, QNAME, SPACE, STRING, Token, decode_string, encode_string, scan_escape_string, tokens

__all__ = ["CRYPTO_FUNCTIONS", "MASK", "SECRET_NAME", "RedactingFilter", "redact", "redact_statement", "redact_statements_in"]

MASK = "***"
_MASKS = (MASK, f"'{MASK}'")

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
    # A value that is already the mask stays as it is (``password='***'`` of a redacted statement).
    return _KEYWORD.sub(lambda m: m[0] if m["secret"] in _MASKS else f"{m['head']}{MASK}", text)


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


# -- statement texts ------------------------------------------------------------------------

#: Names after which a literal is a secret (matched against the whole name, lower-cased; of a
#: qualified name such as ``app.api_key``, the last part).
SECRET_NAME = re.compile(r".*(?:password|passwd|passphrase|secret|token|credential).*|pass|pwd|psw|key|.*_key|.*apikey")
#: pgcrypto's functions whose literal arguments are masked: keys, passwords, plaintext.
CRYPTO_FUNCTIONS = frozenset({
    "pgp_sym_encrypt", "pgp_sym_encrypt_bytea", "pgp_sym_decrypt", "pgp_sym_decrypt_bytea",
    "pgp_pub_encrypt", "pgp_pub_encrypt_bytea", "pgp_pub_decrypt", "pgp_pub_decrypt_bytea",
    "encrypt", "decrypt", "encrypt_iv", "decrypt_iv", "hmac", "crypt",
})
# A statement that holds none of these (lower-cased) has nothing to redact: the fast path, as
# most statements are normalized queries. (Searching the lower-cased text is ten times
# faster than re.IGNORECASE.)
_SQL_TRIGGER = re.compile(r"pass|pwd|psw|secret|token|credential|key|mapping|crypt|hmac|://")
_MASKED = f"'{MASK}'"
# Literals inside literals: SQL in a function body that builds SQL in an EXECUTE string...
# Deeper than this, a literal that might hold a secret is masked whole.
_MAX_DEPTH = 4
_ASSIGN = frozenset({"=", ":=", "=>"})


def redact_statement(text: str) -> str:
    """Return the statement *text* with the literals that hold secrets replaced by ``'***'``
    (see the module's docstring for which). Never fails, whatever the text."""
    return _redact_sql(text, 0)[0]


def redact_statements_in(node: Any) -> Any:
    """A copy of *node* (JSON-like: dicts, lists, strings, numbers) with
    :func:`redact_statement` applied to every string: for reports, whose texts may come from
    a store written by a version that kept secrets."""
    if isinstance(node, str):
        return redact_statement(node)
    if isinstance(node, dict):
        return {k: redact_statements_in(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [redact_statements_in(v) for v in node]
    return node


def _name(text: str, t: Token) -> str | None:
    """The lower-cased name a NAME or QNAME token stands for, None for any other token."""
    if t.kind == NAME:
        return text[t.start:t.end].lower()
    if t.kind == QNAME:
        inner = text[t.start + (3 if t.style else 1): t.end - (1 if t.closed else 0)]
        return inner.replace('""', '"').lower()
    return None


def _redact_sql(text: str, depth: int) -> tuple[str, bool]:
    """*text* redacted, and whether it ends in a secret's name waiting for its value (so
    that the literals after the literal holding it are secrets)."""
    if not text or not _SQL_TRIGGER.search(text.lower()):
        return text, False
    toks = list(tokens(text))
    sig = [t for t in toks if t.kind not in (SPACE, COMMENT)]
    edits: list[tuple[int, int, str]] = [
        (t.start, t.end, cleaned) for t in toks if t.kind == COMMENT and (cleaned := _clean_comment(text[t.start:t.end], depth))
        != text[t.start:t.end]
    ]
    mapping = False  # the statement is about a user mapping
    parens = 0
    groups: list[int] = []  # paren levels inside which every literal is masked
    group_next = False  # the next "(" opens such a level
    secret_next = False  # the next literal (after "=" or TO) is a secret
    tail: int | None = None  # every literal at this paren level and deeper is a secret
    dangling = False
    prev: str | None = None
    for i, t in enumerate(sig):
        word = _name(text, t)
        raw = text[t.start:t.end] if t.kind == OP else ""
        if t.kind == STRING:
            if secret_next or groups or tail is not None:
                edits.append((t.start, _secret_end(text, t), _mask(t)))
            elif t.style not in ("B", "X"):
                tail = _clean_literal(text, t, sig, i, depth, edits, tail, parens)
            secret_next = False
        elif raw == ";":
            mapping, parens, groups, group_next, secret_next, tail = False, 0, [], False, False, None
        elif raw == "(":
            parens += 1
            if group_next:
                groups.append(parens)
            group_next = secret_next = False
        elif raw == ")":
            if groups and groups[-1] == parens:
                groups.pop()
            if tail is not None and tail == parens:
                tail = None
            parens = max(0, parens - 1)
            group_next = secret_next = False
        elif raw in _ASSIGN and secret_next:
            pass
        elif raw == "%" and secret_next:
            dangling = True  # format('... PASSWORD %L', ...): the value comes later
            secret_next = False
        elif word is not None:
            if word == "to" and secret_next:
                pass
            else:
                secret_next = SECRET_NAME.fullmatch(word) is not None
                if word == "mapping" and prev == "user":
                    mapping = True
                group_next = (word in CRYPTO_FUNCTIONS or (mapping and word == "options")) and _is_open(text, sig, i + 1)
        else:
            secret_next = group_next = False
        prev = word
    if secret_next:
        dangling = True
    return _apply(text, edits), dangling


def _mask(t: Token) -> str:
    # U& keeps its prefix: a UESCAPE clause may follow.
    return "U&" + _MASKED if t.style == "U&" else _MASKED


def _is_open(text: str, sig: list[Token], i: int) -> bool:
    return i < len(sig) and sig[i].kind == OP and text[sig[i].start:sig[i].end] == "("


def _secret_end(text: str, t: Token) -> int:
    """Where a secret literal ends: for ``'...'`` holding a backslash, as far as it would
    reach with ``standard_conforming_strings`` off (``'it\'s'`` is then one literal)."""
    if t.style in ("''", "N") and "\\" in text[t.start:t.end]:
        return max(t.end, scan_escape_string(text, t.start + (t.style == "N")))
    return t.end


def _clean_literal(text: str, t: Token, sig: list[Token], i: int, depth: int,
                   edits: list[tuple[int, int, str]], tail: int | None, parens: int) -> int | None:
    """Redact what the value of the literal *t* holds (a conninfo, SQL); returns the new
    tail level (this level when the value ends in a secret's name)."""
    escape = "\\"
    if t.style == "U&" and i + 2 < len(sig) and _name(text, sig[i + 1]) == "uescape" and sig[i + 2].kind == STRING:
        escape = decode_string(text, sig[i + 2])[:1] or escape
    value = decode_string(text, t, escape)
    if depth >= _MAX_DEPTH:
        if _SQL_TRIGGER.search(value.lower()):
            edits.append((t.start, _secret_end(text, t), _mask(t)))
        return tail
    cleaned, dangling = _redact_sql(value, depth + 1)
    cleaned = redact(cleaned)
    if cleaned != value:
        raw = text[t.start:t.end]
        tag = raw[: raw.index("$", 1) + 1] if t.style == "$" else "$$"
        edits.append((t.start, t.end, encode_string(cleaned, t.style, tag)))
    return parens if dangling else tail


def _clean_comment(raw: str, depth: int) -> str:
    """A comment with what its words hold redacted as SQL (annotations such as
    ``/*password='x'*/`` or a commented-out statement) and as free text (a conninfo)."""
    if depth >= _MAX_DEPTH:
        return f"/*{MASK}*/" if _SQL_TRIGGER.search(raw.lower()) else raw
    if raw.startswith("--"):
        head, body, tail = "--", raw[2:], ""
    else:
        closed = raw.endswith("*/") and len(raw) >= 4
        head, body, tail = "/*", raw[2:-2] if closed else raw[2:], "*/" if closed else ""
    return head + redact(_redact_sql(body, depth + 1)[0]) + tail


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    if not edits:
        return text
    out, pos = [], 0
    for start, end, replacement in sorted(edits):
        if start < pos:
            continue  # inside a literal already masked further (see _secret_end)
        out += [text[pos:start], replacement]
        pos = end
    out.append(text[pos:])
    return "".join(out)
