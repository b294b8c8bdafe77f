"""Secrets in statement texts: the SQL lexer against PostgreSQL's own scanner (through
pglast), the redaction of every secret form, and properties checked on generated texts."""

from __future__ import annotations

import re
from typing import Any

import pglast.parser
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from pgperf._sqllex import COMMENT, NAME, NUMBER, OP, PARAM, QNAME, SPACE, STRING, decode_string, tokens
from pgperf.redact import MASK, redact_statement, redact_statements_in

SECRET = "S3cr3t-Pa55"

# -- the lexer against the server's scanner ---------------------------------------------------

# Statements whose tokens the server's scanner and ours must agree on: every literal form,
# comments, names, parameters; the awkward corners of each.
CORPUS = [
    "SELECT 1",
    "select a, b FROM t WHERE x = $1 AND y <> $2 ORDER BY 1 DESC LIMIT $3",
    "ALTER ROLE app WITH LOGIN ENCRYPTED PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b' VALID UNTIL 'infinity'",
    "CREATE ROLE x PASSWORD 'it''s'",
    "CREATE ROLE x PASSWORD E'it\\'s \\\\ \\n \\x41 \\u0041'",
    "CREATE ROLE x PASSWORD e'a''b'",
    "CREATE ROLE x PASSWORD $$dollar 'quoted'$$",
    "CREATE ROLE x PASSWORD $tag$ $$ inner $$ $tag$",
    "CREATE ROLE x PASSWORD $a$ x $b$ y $a$",
    "CREATE ROLE x PASSWORD U&'d\\0061t\\+000061' UESCAPE '\\'",
    "ALTER ROLE x PASSWORD U&'d!0061ta' UESCAPE '!'",
    "SELECT B'0101', X'FF', b'1', x'00'",
    "SELECT 'first'\n'second', 'a' -- comment\n  'b'",
    "SELECT 'a' 'b'",
    "SELECT a$$b$$, $1, x$y, _z9$",
    'SELECT "quoted ""name""", U&"d\\0061t", "Mixed Case"',
    "SELECT /* outer /* nested */ still comment */ 1",
    "SELECT 1 -- trailing comment",
    "SELECT 1.5, .5, 1e10, 1.5E-3, 0x1F, 0o17, 0b101, 1_000_000",
    "SELECT a::text, b := 1, c => 2, d >= 3, e != 4, f || g",
    "DO $$BEGIN EXECUTE 'ALTER ROLE r PASSWORD ' || quote_literal('x'); END$$",
    "CREATE USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (user 'u', password 'p')",
    "ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET password 'p', ADD \"sslpassword\" 'q', DROP user)",
    "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', port '5432')",
    "CREATE SUBSCRIPTION s CONNECTION 'host=h password=p dbname=d' PUBLICATION p WITH (connect = false)",
    "SELECT dblink_connect('c', 'postgresql://u:p@h/d')",
    "SELECT pgp_sym_encrypt(data, 'key', 'cipher-algo=aes256') FROM t",
    "SET app.api_key = 'k'; SET LOCAL app.secret TO 'v'",
    "SELECT $x$\n multi\n line $x$, 'ü', éé, 'naïve'",
    "SELECT n'national', N'x'",
    "SELECT array[1,2][1:2], (a).b, t.*",
    "COPY t FROM PROGRAM 'curl https://u:p@example.com/x' WITH (FORMAT csv)",
]

_STRINGS = {"SCONST", "USCONST", "BCONST", "XCONST"}
_COMMENTS = {"C_COMMENT", "SQL_COMMENT"}
_OPS = {"Op", "TYPECAST", "COLON_EQUALS", "EQUALS_GREATER", "LESS_EQUALS", "GREATER_EQUALS", "NOT_EQUALS", "DOT_DOT"}


def _category(name: str, kind: str) -> str:
    if name in _STRINGS:
        return STRING
    if name in _COMMENTS:
        return COMMENT
    if name in ("IDENT", "UIDENT") or kind != "NO_KEYWORD":
        return NAME
    if name == "PARAM":
        return PARAM
    if name in ("ICONST", "FCONST"):
        return NUMBER
    if name in _OPS or name.startswith("ASCII_"):
        return OP
    raise AssertionError(f"unexpected token {name}")


def server_tokens(text: str) -> list[tuple[int, int, str]]:
    """(start, end, category) of each token the server's scanner finds (pglast gives
    character offsets, the end inclusive); N'...' is NCHAR then a string: one string here."""
    out: list[tuple[int, int, str]] = []
    for t in pglast.parser.scan(text):
        category = _category(t.name, t.kind)
        if category == STRING and out and out[-1][2] == "nchar" and out[-1][1] == t.start:
            out[-1] = (out[-1][0], t.end + 1, STRING)
            continue
        out.append((t.start, t.end + 1, "nchar" if t.name == "NCHAR" and text[t.end + 1: t.end + 2] == "'" else category))
    return out


def our_tokens(text: str) -> list[tuple[int, int, str]]:
    return [(t.start, t.end, NAME if t.kind == QNAME else t.kind) for t in tokens(text) if t.kind != SPACE]


@pytest.mark.parametrize("text", CORPUS)
def test_lexer_agrees_with_the_server_scanner(text: str) -> None:
    assert our_tokens(text) == server_tokens(text)


# Generated statements: tokens of every kind, joined by spaces, comments or newlines.
_names = st.sampled_from(["select", "FROM", "t", "a_b", "x$1", "éa", "password", "Key", "user", "mapping", "e", "u", "n"])
_plain = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_string_literals = st.one_of(
    _plain.map(lambda s: "'" + s.replace("'", "''") + "'"),
    _plain.map(lambda s: "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"),
    _plain.filter(lambda s: "$q$" not in s and not s.endswith("$")).map(lambda s: f"$q${s}$q$"),
    _plain.filter(lambda s: "$$" not in s and not s.endswith("$")).map(lambda s: f"$${s}$$"),
    _plain.map(lambda s: "U&'" + s.replace("\\", "\\\\").replace("'", "''") + "'"),
    st.from_regex(r"[01]{0,8}", fullmatch=True).map(lambda s: f"B'{s}'"),
    st.from_regex(r"[0-9A-F]{0,8}", fullmatch=True).map(lambda s: f"X'{s}'"),
)
_comments = st.one_of(
    _plain.filter(lambda s: "*/" not in s and "/*" not in s and not s.endswith("*") and not s.endswith("/")).map(lambda s: f"/*{s}*/"),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00\n\r"), max_size=12).map(lambda s: f"--{s}\n"),
)
_others = st.sampled_from(["$1", "$23", "42", "1.5", "(", ")", ",", ";", "=", "::", ".", "||", '"Quoted ""x"""', "[", "]"])
_token = st.one_of(_names, _string_literals, _comments, _others)
_gap = st.sampled_from([" ", "\n", "\t", "  \n  "])


@st.composite
def statements(draw: Any) -> str:
    parts = draw(st.lists(st.tuples(_token, _gap), max_size=12))
    return "".join(token + gap for token, gap in parts)


@settings(max_examples=300, deadline=None)
@given(statements())
@example("B''\n'''' ")  # a bit string continued: its quotes are never doubled
@example("X'ab'\n'cd''' ")
def test_lexer_agrees_with_the_server_scanner_on_generated_statements(text: str) -> None:
    assert our_tokens(text) == server_tokens(text)


@settings(max_examples=300, deadline=None)
@given(st.text())
@example("'open literal")
@example("$$ open dollar")
@example("/* open /* nested */")
@example('"open name')
@example("E'\\")
@example("U&'")
def test_lexer_covers_any_text_and_redaction_never_fails(text: str) -> None:
    spans = list(tokens(text))
    assert "".join(text[t.start:t.end] for t in spans) == text
    assert all(t.end > t.start for t in spans)
    assert isinstance(redact_statement(text), str)


def test_string_values() -> None:
    def value(text: str) -> str:
        token = next(t for t in tokens(text) if t.kind == STRING)
        return decode_string(text, token)

    assert value("'it''s'") == "it's"
    assert value("E'a\\'b\\\\c\\n\\x41\\101\\u0042'") == "a'b\\c\nAAB"
    assert value("'first'\n  -- comment\n'second'") == "firstsecond"
    assert value("$t$ $$ x $t$") == " $$ x "
    assert value("U&'d\\0061t\\+000061'") == "data"
    assert value("'open") == "open"


# -- what is redacted ------------------------------------------------------------------------

REDACTED = [
    (f"CREATE ROLE app PASSWORD '{SECRET}'", "CREATE ROLE app PASSWORD '***'"),
    (f"create user app with login encrypted password '{SECRET}' valid until 'infinity'",
     "create user app with login encrypted password '***' valid until 'infinity'"),
    (f"ALTER ROLE app PASSWORD E'{SECRET}\\'s'", "ALTER ROLE app PASSWORD '***'"),
    (f"ALTER USER app /* why */ PASSWORD\n  -- new one\n  $pw${SECRET}$pw$", "ALTER USER app /* why */ PASSWORD\n  -- new one\n  '***'"),
    (f"ALTER ROLE app PASSWORD U&'{SECRET}' UESCAPE '!'", "ALTER ROLE app PASSWORD U&'***' UESCAPE '!'"),
    (f"ALTER ROLE app PASSWORD 'S3cr'\n'{SECRET}'", "ALTER ROLE app PASSWORD '***'"),
    (f"ALTER ROLE app PASSWORD '{SECRET}", "ALTER ROLE app PASSWORD '***'"),  # cut short
    (f"ALTER GROUP g RENAME TO h; ALTER ROLE app PASSWORD '{SECRET}'", "ALTER GROUP g RENAME TO h; ALTER ROLE app PASSWORD '***'"),
    (f"CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password '{SECRET}')",
     "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user '***', password '***')"),
    (f"ALTER USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (SET password '{SECRET}')",
     "ALTER USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (SET password '***')"),
    (f"CREATE USER MAPPING FOR bob SERVER s OPTIONS (username 'bob', secret_access '{SECRET}')",
     "CREATE USER MAPPING FOR bob SERVER s OPTIONS (username '***', secret_access '***')"),
    (f"CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (host 'db', \"password\" '{SECRET}')",
     "CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (host 'db', \"password\" '***')"),
    (f"SELECT dblink_connect('c', 'host=db user=u password={SECRET} dbname=d')",
     "SELECT dblink_connect('c', 'host=db user=u password=*** dbname=d')"),
    (f"SELECT * FROM dblink('dbname=d password=''{SECRET} x''', 'select 1') AS t(a int)", None),
    (f"CREATE SUBSCRIPTION s CONNECTION 'postgresql://rep:{SECRET}@db/app' PUBLICATION p",
     "CREATE SUBSCRIPTION s CONNECTION 'postgresql://rep:***@db/app' PUBLICATION p"),
    (f"ALTER SYSTEM SET primary_conninfo = 'host=db password={SECRET}'", "ALTER SYSTEM SET primary_conninfo = 'host=db password=***'"),
    (f"COPY t FROM PROGRAM 'curl https://u:{SECRET}@example.com/x'", "COPY t FROM PROGRAM 'curl https://u:***@example.com/x'"),
    (f"SELECT pgp_sym_decrypt(col, '{SECRET}') FROM t", "SELECT pgp_sym_decrypt(col, '***') FROM t"),
    (f"EXPLAIN SELECT public.crypt('{SECRET}', gen_salt('bf'))", "EXPLAIN SELECT public.crypt('***', gen_salt('***'))"),
    (f"SET app.api_key = '{SECRET}'", "SET app.api_key = '***'"),
    (f"SET SESSION my.token TO '{SECRET}'", "SET SESSION my.token TO '***'"),
    (f"ALTER ROLE r SET app.secret = '{SECRET}'", "ALTER ROLE r SET app.secret = '***'"),
    (f"ALTER SYSTEM SET ssl_passphrase_command = 'echo {SECRET}'", "ALTER SYSTEM SET ssl_passphrase_command = '***'"),
    (f"EXPLAIN SELECT * FROM users WHERE api_key = '{SECRET}'", "EXPLAIN SELECT * FROM users WHERE api_key = '***'"),
    (f"DO $$BEGIN EXECUTE 'ALTER ROLE r PASSWORD ' || quote_literal('{SECRET}'); END$$",
     "DO $$BEGIN EXECUTE 'ALTER ROLE r PASSWORD ' || quote_literal('***'); END$$"),
    (f"DO $$BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', 'r', '{SECRET}'); END$$",
     "DO $$BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', '***', '***'); END$$"),
    (f"DO $body$BEGIN PERFORM dblink_connect('host=h password={SECRET}'); END$body$",
     "DO $body$BEGIN PERFORM dblink_connect('host=h password=***'); END$body$"),
    (f"CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'ALTER ROLE r PASSWORD ''{SECRET}'''",
     "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'ALTER ROLE r PASSWORD ''***'''"),
    (f"DO E'BEGIN EXECUTE \\'ALTER ROLE r PASSWORD \\'\\'{SECRET}\\'\\'\\'; END'", None),
    # standard_conforming_strings off: the backslash escapes the quote, the secret runs on.
    (f"ALTER ROLE r PASSWORD 'ab\\'{SECRET}'", "ALTER ROLE r PASSWORD '***'"),
    (f"SELECT 1 /* from host=db password={SECRET} */", "SELECT 1 /* from host=db password=*** */"),
    (f"SELECT * FROM t /*controller='login',password='{SECRET}'*/", "SELECT * FROM t /*controller='login',password='***'*/"),
    (f"SELECT 1 -- was: ALTER ROLE app PASSWORD '{SECRET}'", "SELECT 1 -- was: ALTER ROLE app PASSWORD '***'"),
    (f"SELECT 1 /* outer /* ALTER ROLE app PASSWORD '{SECRET}' */ */", "SELECT 1 /* outer /* ALTER ROLE app PASSWORD '***' */ */"),
]


@pytest.mark.parametrize(("text", "expected"), REDACTED)
def test_secret_redacted(text: str, expected: str | None) -> None:
    cleaned = redact_statement(text)
    assert SECRET not in cleaned
    assert MASK in cleaned
    if expected is not None:
        assert cleaned == expected


UNCHANGED = [
    "SELECT * FROM accounts WHERE id = $1",
    "SELECT * FROM t WHERE key = $1 AND password_changed_at > $2 -- keys rotate daily",
    "CREATE TABLE tokens (id bigint PRIMARY KEY, token text NOT NULL DEFAULT '', api_key text)",
    "ALTER TABLE t ADD CONSTRAINT t_key UNIQUE (key)",
    "INSERT INTO sessions (token, user_id) VALUES ($1, $2) ON CONFLICT (token) DO NOTHING",
    "UPDATE users SET password_hash = $1 WHERE id = $2",
    "CREATE ROLE reporting NOLOGIN; GRANT pg_monitor TO reporting",
    "ALTER ROLE app PASSWORD NULL",
    "CREATE ROLE app PASSWORD $1",
    "CREATE USER MAPPING FOR bob SERVER s",
    "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db', dbname 'app', port '5432')",
    "SELECT pgp_sym_encrypt($1, $2)",
    "SELECT encode(digest($1, 'sha256'), 'hex')",
    "SET application_name = 'pgperf'",
    "SET search_path TO public, 'app'",
    "SELECT 'postgresql://db/app', 'host=db dbname=app'",
    "SELECT $$keys and passwords are discussed here$$",
    "CREATE TABLE mapping (k text, v text); COMMENT ON TABLE mapping IS 'user mapping of keys'",
    "DO $$BEGIN RAISE NOTICE 'no secret'; END$$",
]


@pytest.mark.parametrize("text", UNCHANGED)
def test_statement_without_secret_unchanged(text: str) -> None:
    assert redact_statement(text) == text


def test_redacting_twice_changes_nothing_more() -> None:
    for text, _ in REDACTED:
        once = redact_statement(text)
        assert redact_statement(once) == once


def test_report_json_redacted_in_every_string() -> None:
    data = {"queries": {"top": [{"query_text": f"ALTER ROLE r PASSWORD '{SECRET}'", "calls": 3}]},
            "recommendations": [{"message": f"Query: ALTER ROLE r PASSWORD '{SECRET[:4]}…"}], "n": None}
    cleaned = redact_statements_in(data)
    assert SECRET[:4] not in repr(cleaned)
    assert cleaned["queries"]["top"][0] == {"query_text": "ALTER ROLE r PASSWORD '***'", "calls": 3}
    assert cleaned["n"] is None and data["queries"]["top"][0]["query_text"].endswith(f"'{SECRET}'")


# -- properties ------------------------------------------------------------------------------

MARK = "Zq9Secret"
_content = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20).map(lambda s: MARK + s)


@st.composite
def secret_literals(draw: Any) -> str:
    """The secret as a literal of any style, split over lines or not."""
    value = draw(_content)
    style = draw(st.sampled_from(["plain", "E", "dollar", "tag", "U&", "N", "continued"]))
    if style == "plain":
        return "'" + value.replace("'", "''") + "'"
    if style == "N":
        return "N'" + value.replace("'", "''") + "'"
    if style == "E":
        return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if style == "U&":
        return "U&'" + "".join(f"\\{ord(c):04x}" if ord(c) < 0x10000 else c for c in value) + "'"
    if style == "continued":
        half = len(value) // 2
        return "'" + value[:half].replace("'", "''") + "'\n  -- more\n'" + value[half:].replace("'", "''") + "'"
    tag = "$$" if style == "dollar" else "$k$"
    assume(tag not in value and not value.endswith("$"))
    return f"{tag}{value}{tag}"


_separator = st.lists(st.sampled_from([" ", "\n", "\t", "/* c */", "/* a /* nested */ b */", "-- line\n"]), min_size=1, max_size=3).map(
    lambda parts: " ".join(parts))
_prefix = st.sampled_from([
    "CREATE ROLE app", "ALTER ROLE app WITH LOGIN ENCRYPTED", "alter user \"App\" with", "CREATE USER x IN ROLE y",
    "SELECT 'x'; ALTER ROLE app", "DO $$ BEGIN NULL; END $$; CREATE GROUP g",
])
_suffix = st.sampled_from(["", " VALID UNTIL 'infinity'", "; SELECT 1", " LOGIN", "\n"])


@settings(max_examples=400, deadline=None)
@given(_prefix, st.sampled_from(["PASSWORD", "password", "Password"]), _separator, secret_literals(), _suffix)
def test_no_literal_after_password_survives(prefix: str, keyword: str, gap: str, literal: str, suffix: str) -> None:
    text = f"{prefix} {keyword}{gap}{literal}{suffix}"
    cleaned = redact_statement(text)
    assert MARK not in cleaned
    # The token after PASSWORD is the mask, whatever the separators were.
    sig = [t for t in tokens(cleaned) if t.kind not in (SPACE, COMMENT)]
    at = next(i for i, t in enumerate(sig) if cleaned[t.start:t.end].lower() == "password")
    assert cleaned[sig[at + 1].start:sig[at + 1].end] in ("'***'", "U&'***'")


_benign_names = st.sampled_from([
    "id", "key", "keys", "token_count", "password_changed_at", "mapping", "crypto_col", "encrypted", "user", "name", "t",
])
_benign_values = st.one_of(
    st.sampled_from(["$1", "$2", "42", "now()", "NULL"]),
    st.text(st.characters(codec="ascii", categories=["L", "N", "Zs"]), max_size=15).map(lambda s: "'" + s + "'"),
)


@st.composite
def statements_without_secrets(draw: Any) -> str:
    """Statements that mention keys, tokens, passwords and mappings without holding one:
    a secret-like name is compared with a parameter, never with a literal."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        column = draw(_benign_names)
        value = draw(_benign_values)
        if re.fullmatch(r"key|keys|token_count|password_changed_at", column):
            value = draw(st.sampled_from(["$1", "$2"]))
        table = draw(_benign_names)
        comment = draw(st.sampled_from(["", " -- rotate the key daily", " /* token bucket */", " /* see https://example.com/x */"]))
        parts.append(draw(st.sampled_from([
            f"SELECT {column} FROM {table} WHERE {column} = {value}{comment}",
            f"UPDATE {table} SET {column} = {value} WHERE id = $1{comment}",
            f"CREATE INDEX ON {table} ({column}){comment}",
            f"COMMENT ON TABLE {table} IS {value if value.startswith(chr(39)) else repr('x')}",
        ])))
    return ";\n".join(parts)


@settings(max_examples=300, deadline=None)
@given(statements_without_secrets())
def test_statements_without_secrets_are_unchanged(text: str) -> None:
    assert redact_statement(text) == text
