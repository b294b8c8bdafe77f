"""The conditions and sort keys of a plan, read as expressions by PostgreSQL's parser.

EXPLAIN (VERBOSE) prints a scan's ``Filter``, a join's ``Hash Cond`` and a sort's ``Sort
Key`` as SQL expressions with every column qualified by its relation's alias
(``(h.created_at >= (now() - $1))``). Parsed with pglast, an AND of comparisons gives the
columns an index could serve: equality (``=``, ``= ANY``, ``IS NULL``) and range
(``<``, ``<=``, ``>``, ``>=``) comparisons of a column with something that does not read
the same relation. ORs, negations, functions of a column (which need an expression index)
and comparisons between two columns of one relation give nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pglast import ast, parse_sql
from pglast.enums.parsenodes import A_Expr_Kind
from pglast.enums.primnodes import BoolExprType, NullTestType
from pglast.parser import ParseError
from pglast.visitors import Visitor

__all__ = ["Comparison", "SortColumn", "comparisons", "sort_columns"]

Use = Literal["eq", "range"]
_RANGE = {"<", "<=", ">", ">="}
# Plan-only notation that is not SQL: subplan and initplan references stand for a value.
_PLAN_REFS = re.compile(r"\((?:hashed )?SubPlan [^()]*\)|\(InitPlan [^()]*\)\.col\d+")


@dataclass(frozen=True)
class Comparison:
    """``alias.column <op> other`` where *other* reads ``other_aliases`` (may be empty)."""

    alias: str
    column: str
    use: Use
    other_aliases: frozenset[str]


@dataclass(frozen=True)
class SortColumn:
    alias: str
    column: str


def _parse_where(expression: str) -> ast.Node | None:
    try:
        parsed = parse_sql("SELECT 1 WHERE " + _PLAN_REFS.sub("NULL", expression))
    except ParseError:
        return None
    if len(parsed) != 1 or not isinstance(parsed[0].stmt, ast.SelectStmt):
        return None
    where: ast.Node | None = parsed[0].stmt.whereClause
    return where


def _column(node: ast.Node | tuple[object, ...] | None) -> tuple[str, str] | None:
    """(alias, column) of a qualified column reference, possibly cast (``(h.code)::text``
    is still served by an index on code when the cast changes nothing)."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.ColumnRef) and node.fields and len(node.fields) == 2:
        alias, column = node.fields
        if isinstance(alias, ast.String) and isinstance(column, ast.String):
            return str(alias.sval), str(column.sval)
    return None


class _Aliases(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()

    def visit_ColumnRef(self, ancestors: object, node: ast.ColumnRef) -> None:
        if node.fields and len(node.fields) >= 2 and isinstance(node.fields[0], ast.String):
            self.found.add(str(node.fields[0].sval))


def _aliases(node: ast.Node | tuple[object, ...] | None) -> frozenset[str]:
    if node is None:
        return frozenset()
    visitor = _Aliases()
    visitor(node)
    return frozenset(visitor.found)


def _conjuncts(node: ast.Node | None) -> list[ast.Node]:
    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR:
        out: list[ast.Node] = []
        for arg in node.args or ():
            out += _conjuncts(arg)
        return out
    return [node] if node is not None else []


def _operator(node: ast.A_Expr) -> str | None:
    if node.name and len(node.name) == 1 and isinstance(node.name[0], ast.String):
        return str(node.name[0].sval)
    return None


def _compare(node: ast.Node) -> list[Comparison]:
    if isinstance(node, ast.NullTest) and node.nulltesttype == NullTestType.IS_NULL:
        col = _column(node.arg)
        return [Comparison(col[0], col[1], "eq", frozenset())] if col else []
    if not isinstance(node, ast.A_Expr):
        return []
    op = _operator(node)
    if node.kind == A_Expr_Kind.AEXPR_OP_ANY and op == "=":
        col = _column(node.lexpr)
        if col and col[0] not in _aliases(node.rexpr):
            return [Comparison(col[0], col[1], "eq", _aliases(node.rexpr))]
        return []
    if node.kind != A_Expr_Kind.AEXPR_OP or op not in _RANGE | {"="}:
        return []
    out = []
    for this, other in ((node.lexpr, node.rexpr), (node.rexpr, node.lexpr)):
        col = _column(this)
        if col is None:
            continue
        others = _aliases(other)
        if col[0] in others:
            continue  # two columns of one relation: no index condition
        out.append(Comparison(col[0], col[1], "eq" if op == "=" else "range", others))
    return out


def comparisons(expression: str) -> list[Comparison]:
    """The indexable comparisons of a plan condition, in order of appearance."""
    out: list[Comparison] = []
    for conjunct in _conjuncts(_parse_where(expression)):
        out += _compare(conjunct)
    return out


def sort_columns(keys: list[str]) -> list[SortColumn] | None:
    """The columns of a Sort node's keys (``h.created_at DESC``), None when one key is
    not a plain column."""
    out = []
    for key in keys:
        try:
            parsed = parse_sql("SELECT 1 ORDER BY " + _PLAN_REFS.sub("NULL", key))
        except ParseError:
            return None
        stmt = parsed[0].stmt if len(parsed) == 1 else None
        if not isinstance(stmt, ast.SelectStmt) or not stmt.sortClause or len(stmt.sortClause) != 1:
            return None
        sort_by = stmt.sortClause[0]
        col = _column(sort_by.node) if isinstance(sort_by, ast.SortBy) else None
        if col is None:
            return None
        out.append(SortColumn(*col))
    return out
