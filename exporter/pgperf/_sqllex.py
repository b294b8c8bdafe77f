"""A lexer for PostgreSQL's SQL, enough to find string literals, comments and names.

It follows the rules of PostgreSQL's own scanner (``src/backend/parser/scan.l``) for what
decides where a literal ends: ``'...'`` with ``''`` doubled quotes, ``E'...'`` with
backslash escapes, ``U&'...'``, ``B'...'``, ``X'...'``, ``N'...'``, dollar quotes
``$$...$$`` and ``$tag$...$tag$`` (a ``$`` inside a name does not open one), two quoted
segments separated by whitespace that holds a newline being one literal, block comments that
nest, ``"quoted"`` names. ``standard_conforming_strings`` is taken as on (the default since
PostgreSQL 9.1): a backslash in ``'...'`` is an ordinary character.

Unlike the server it never fails: a literal or comment left open (a text cut short) runs to
the end of the text, and a character it does not know is a one-character operator.
``tests/test_redact_sql.py`` compares its tokens with those of the server's scanner (through
pglast) on a corpus and on generated statements.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["Token", "decode_string", "encode_string", "scan_escape_string", "tokens"]

# Kinds of token.
SPACE, COMMENT, STRING, NAME, QNAME, PARAM, NUMBER, OP = (
    "space", "comment", "string", "name", "qname", "param", "number", "op")

_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_LINE_COMMENT = re.compile(r"--[^\n\r]*")
# A name: letters, digits, "_" and "$" after the first (PostgreSQL counts every byte >= 0x80
# as a letter).
_NAME = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_PARAM = re.compile(r"\$[0-9]+")
_NUMBER = re.compile(
    r"0[xX][0-9A-Fa-f_]+|0[oO][0-7_]+|0[bB][01_]+"
    r"|(?:[0-9][0-9_]*(?:\.(?!\.)[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?"
)
# Operators: runs of operator characters, cut before a comment start.
_OPERATOR = re.compile(r"::|:=|=>|(?:[~!@#^&|`?+*%<>=]|-(?!-)|/(?!\*))+")
# Between two quoted segments of one literal: whitespace with at least one newline, where a
# "--" comment counts as whitespace (scan.l: quotecontinue).
_CONTINUE = re.compile(r"(?:[ \t\f\v]|--[^\n\r]*)*[\n\r](?:[ \t\n\r\f\v]+|--[^\n\r]*[\n\r])*'")
_SPACES = frozenset(" \t\n\r\f\v")
_PUNCT = frozenset("(),;[]")
_PLAIN_BODY = re.compile(r"[^']*")
_ESCAPE_BODY = re.compile(r"[^'\\]*")


class Token(NamedTuple):
    """One token: its kind, where it is (``text[start:end]``), and for a string literal its
    style (``''``, ``E``, ``U&``, ``B``, ``X``, ``N`` or ``$``) and whether it was closed."""

    kind: str
    start: int
    end: int
    style: str = ""
    closed: bool = True


def _scan_quoted(text: str, pos: int, escapes: bool, segments: list[tuple[int, int]] | None = None,
                 *, doubled: bool = True) -> tuple[int, bool]:
    """End of the quoted literal whose first segment's content starts at *pos* (after the
    opening quote), and whether it was closed; the content of each segment is appended to
    *segments* as (start, end). *doubled*: a doubled quote is content (not in bit and hex
    strings, B'...' and X'...', whose first quote ends them: scan.l's xbinside, xhinside)."""
    body = _ESCAPE_BODY if escapes else _PLAIN_BODY
    n = len(text)
    first = pos
    while True:
        pos = body.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string
        if pos >= n:
            if segments is not None:
                segments.append((first, n))
            return n, False
        if text[pos] == "\\":  # escapes only: the next character, whatever it is, is content
            pos += 2
            if pos > n:
                return n, False
            continue
        # A quote: doubled, it is content; else it closes this segment.
        if doubled and text.startswith("''", pos):
            pos += 2
            continue
        if segments is not None:
            segments.append((first, pos))
        pos += 1
        more = _CONTINUE.match(text, pos)
        if more is None:
            return pos, True
        pos = first = more.end()


def scan_escape_string(text: str, pos: int) -> int:
    """End of a quoted literal starting at *pos* (its opening quote) read with backslash
    escapes: where it would end if ``standard_conforming_strings`` were off."""
    return _scan_quoted(text, pos + 1, True)[0]


def _block_comment_end(text: str, pos: int) -> int:
    depth, pos = 1, pos + 2
    while depth:
        close = text.find("*/", pos)
        opened = text.find("/*", pos)
        if close < 0:
            return len(text)
        if 0 <= opened < close:
            depth, pos = depth + 1, opened + 2
        else:
            depth, pos = depth - 1, close + 2
    return pos


def tokens(text: str) -> Iterator[Token]:
    """The tokens of *text*, spaces and comments included, covering it without gaps."""
    pos, n = 0, len(text)
    while pos < n:
        c = text[pos]
        if c in _PUNCT:
            yield Token(OP, pos, pos + 1)  # the most frequent tokens of normalized texts
            pos += 1
        elif c in _SPACES:
            end = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
            yield Token(SPACE, pos, end)
            pos = end
        elif c == "-" and text.startswith("--", pos):
            end = _LINE_COMMENT.match(text, pos).end()  # type: ignore[union-attr]
            yield Token(COMMENT, pos, end)
            pos = end
        elif c == "/" and text.startswith("/*", pos):
            end = _block_comment_end(text, pos)
            yield Token(COMMENT, pos, end)
            pos = end
        elif c == "'":
            end, closed = _scan_quoted(text, pos + 1, False)
            yield Token(STRING, pos, end, "''", closed)
            pos = end
        elif c == '"':
            end, closed = _quoted_name_end(text, pos + 1)
            yield Token(QNAME, pos, end, "", closed)
            pos = end
        elif c == "$":
            if m := _PARAM.match(text, pos):
                yield Token(PARAM, pos, m.end())
                pos = m.end()
            elif m := _DOLLAR_TAG.match(text, pos):
                close = text.find(m.group(), m.end())
                closed = close >= 0
                end = close + len(m.group()) if closed else n
                yield Token(STRING, pos, end, "$", closed)
                pos = end
            else:
                yield Token(OP, pos, pos + 1)
                pos += 1
        elif m := _NAME.match(text, pos):
            # A one-letter prefix glued to a quote starts a literal (the longest match wins
            # in the server's scanner, so "abce'x'" is a name and a plain literal).
            if m.end() == pos + 1 and m.end() < n:
                nxt = text[pos + 1]
                up = c.upper()
                if nxt == "'" and up in "EBXN":
                    end, closed = _scan_quoted(text, pos + 2, up == "E", doubled=up not in "BX")
                    yield Token(STRING, pos, end, up, closed)
                    pos = end
                    continue
                if up == "U" and text.startswith("&'", pos + 1):
                    end, closed = _scan_quoted(text, pos + 3, False)
                    yield Token(STRING, pos, end, "U&", closed)
                    pos = end
                    continue
                if up == "U" and text.startswith('&"', pos + 1):
                    end, closed = _quoted_name_end(text, pos + 3)
                    yield Token(QNAME, pos, end, "U&", closed)
                    pos = end
                    continue
            yield Token(NAME, pos, m.end())
            pos = m.end()
        elif m := _NUMBER.match(text, pos):
            yield Token(NUMBER, pos, m.end())
            pos = m.end()
        elif m := _OPERATOR.match(text, pos):
            yield Token(OP, pos, m.end())
            pos = m.end()
        else:
            yield Token(OP, pos, pos + 1)  # . : and anything unknown
            pos += 1


def _quoted_name_end(text: str, pos: int) -> tuple[int, bool]:
    while True:
        close = text.find('"', pos)
        if close < 0:
            return len(text), False
        if text.startswith('""', close):
            pos = close + 2
            continue
        return close + 1, True


# -- values of string literals --------------------------------------------------------------

_E_ESCAPE = re.compile(r"''|\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_E_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _chr(code: int, raw: str) -> str:
    try:
        return chr(code) if code else raw
    except (ValueError, OverflowError):
        return raw


def _e_unescape(m: re.Match[str]) -> str:
    octal, hexa, u4, u8, other = m.groups()
    if m.group() == "''":
        return "'"
    if octal is not None:
        return _chr(int(octal, 8) & 0xFF, m.group())
    if hexa is not None:
        return _chr(int(hexa, 16), m.group())
    if u4 is not None or u8 is not None:
        return _chr(int(u4 or u8, 16), m.group())
    return _E_SIMPLE.get(other, other)


def _u_unescape(body: str, escape: str) -> str:
    e = re.escape(escape)
    pattern = re.compile(f"{e}(?:{e}|([0-9A-Fa-f]{{4}})|\\+([0-9A-Fa-f]{{6}}))")

    def one(m: re.Match[str]) -> str:
        if m.group(1) is None and m.group(2) is None:
            return escape
        return _chr(int(m.group(1) or m.group(2), 16), m.group())

    return pattern.sub(one, body)


def decode_string(text: str, token: Token, uescape: str = "\\") -> str:
    """The value of the string literal *token* of *text* (as near as matters for finding
    what it holds: an escape the server would refuse is kept as written)."""
    raw = text[token.start:token.end]
    if token.style == "$":
        tag = raw[: raw.index("$", 1) + 1]
        return raw[len(tag): len(raw) - len(tag)] if token.closed else raw[len(tag):]
    prefix = {"''": 1, "U&": 3}.get(token.style, 2)
    # Segments continued on a new line are one value.
    segments: list[tuple[int, int]] = []
    _scan_quoted(raw, prefix, token.style == "E", segments, doubled=token.style not in ("B", "X"))
    body = "".join(raw[a:b] for a, b in segments)
    if token.style == "E":
        return _E_ESCAPE.sub(_e_unescape, body)
    body = body.replace("''", "'")
    if token.style == "U&":
        return _u_unescape(body, uescape)
    return body


def encode_string(value: str, style: str, tag: str = "$$") -> str:
    """A literal of *value* in a style like *style*: a dollar quote keeps its tag (when the
    value does not hold it), ``E`` keeps backslash escapes, anything else is ``'...'``."""
    if style == "$" and tag not in value:
        return f"{tag}{value}{tag}"
    quoted = value.replace("'", "''")
    if style == "E" or (style == "$" and "\\" in value):
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"
