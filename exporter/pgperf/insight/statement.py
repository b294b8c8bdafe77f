"""What a statement is, decided by PostgreSQL's own parser before pgperf plans it.

Insight plans statements taken from pg_stat_statements. Only the five kinds of statement
EXPLAIN can plan without running anything are accepted — SELECT, INSERT, UPDATE, DELETE
and MERGE — as exactly one statement; everything else (utility commands, ``SELECT ... INTO``
which creates a table, several statements in one text, text the parser refuses) is refused
here, before anything reaches the server. The text is parsed with libpg_query (``pglast``),
the parser of PostgreSQL itself, not matched with regular expressions.

A data-modifying CTE (``WITH d AS (DELETE ...) SELECT ...``) is a write statement like a
plain DELETE and is accepted: EXPLAIN without ANALYZE plans it and executes nothing. The
planner may still evaluate stable and immutable functions while estimating; that is why
``plans`` also runs every EXPLAIN in a READ ONLY transaction that it rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pglast import ast, keywords, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor

__all__ = ["ParsedStatement", "StatementKind", "StatementRefused", "parse_statement", "quote_ident"]

StatementKind = Literal["select", "insert", "update", "delete", "merge"]

_KINDS: dict[type[ast.Node], StatementKind] = {
    ast.SelectStmt: "select",
    ast.InsertStmt: "insert",
    ast.UpdateStmt: "update",
    ast.DeleteStmt: "delete",
    ast.MergeStmt: "merge",
}
_DATA_MODIFYING = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


class StatementRefused(ValueError):
    """The text is not one statement insight may plan; ``reason`` says why in one word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ParsedStatement:
    """A statement accepted for planning."""

    kind: StatementKind
    #: The highest ``$n`` the text uses (0: none); on PostgreSQL 13-15 the generic plan is
    #: obtained by executing the prepared statement with that many NULL arguments.
    parameters: int
    #: The statement writes: INSERT, UPDATE, DELETE, MERGE, or a data-modifying CTE.
    writes: bool


class _Params(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.highest = 0
        self.modifying_cte = False

    def visit_ParamRef(self, ancestors: Any, node: ast.ParamRef) -> None:
        self.highest = max(self.highest, int(node.number or 0))

    def visit_CommonTableExpr(self, ancestors: Any, node: ast.CommonTableExpr) -> None:
        if isinstance(node.ctequery, _DATA_MODIFYING):
            self.modifying_cte = True


def parse_statement(text: str) -> ParsedStatement:
    """Accept *text* for planning or raise StatementRefused (see the module docstring)."""
    try:
        parsed = parse_sql(text)
    except ParseError as exc:
        raise StatementRefused("unparsable", f"the statement does not parse: {exc}") from None
    if not parsed:
        raise StatementRefused("empty", "the statement text is empty")
    if len(parsed) > 1:
        raise StatementRefused("multiple_statements", f"the text holds {len(parsed)} statements, not one")
    stmt = parsed[0].stmt
    kind = _KINDS.get(type(stmt)) if stmt is not None else None
    if kind is None:
        name = type(stmt).__name__
        raise StatementRefused("not_plannable", f"{name} is not SELECT, INSERT, UPDATE, DELETE or MERGE")
    if isinstance(stmt, ast.SelectStmt) and _selects_into(stmt):
        raise StatementRefused("select_into", "SELECT ... INTO creates a table: it is not planned")
    visitor = _Params()
    visitor(parsed)
    return ParsedStatement(kind=kind, parameters=visitor.highest,
                           writes=kind != "select" or visitor.modifying_cte)


def _selects_into(stmt: ast.SelectStmt) -> bool:
    if stmt.intoClause is not None:
        return True
    return any(isinstance(arm, ast.SelectStmt) and _selects_into(arm) for arm in (stmt.larg, stmt.rarg))


# Keywords that cannot stand bare as a column or table name (unreserved ones can).
_KEYWORDS = frozenset(keywords.RESERVED_KEYWORDS) | frozenset(keywords.TYPE_FUNC_NAME_KEYWORDS) | frozenset(
    keywords.COL_NAME_KEYWORDS)


def quote_ident(name: str) -> str:
    """*name* as SQL writes it: bare when it is a lower-case plain identifier that is no
    keyword of PostgreSQL's grammar, double-quoted otherwise (PostgreSQL's quote_ident)."""
    plain = name and (name[0].islower() or name[0] == "_") and all(
        c.islower() or c.isdigit() or c in "_$" for c in name) and name.isascii()
    if plain and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'
