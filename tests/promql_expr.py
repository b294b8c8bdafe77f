"""Just enough of PromQL to test rule and dashboard expressions written by others.

``parse`` builds a tree of an expression with the source span of every node, so a node's
text is the expression's own text. Two uses:

* ``without_filtering`` rewrites every comparison as a ``bool`` comparison: an alert's
  threshold (``... > 0.8``) no longer filters, the expression returns 0 or 1 wherever both
  sides exist and match, so that "returns data" tests the families, their labels and the
  vector matching, not the state of the database. The right operand of ``unless`` is left
  as written: it names what to exclude, and with ``bool`` it would exclude everything.
* ``keeping_names`` is the same for the expressions where that is refused: ``bool`` drops
  the metric name, and series that differed only by it (``{__name__=~"pg_settings_.*"}``)
  collide. Each comparison becomes its union with its negation (``(a > b) or (a <= b)``),
  which keeps every matched pair with its name.
* ``selectors`` lists the vector selectors, each to be queried on its own.

The grammar follows Prometheus's: precedence ``^`` > ``* / % atan2`` > ``+ -`` >
comparisons > ``and unless`` > ``or``; modifiers ``bool``, ``on``/``ignoring``,
``group_left``/``group_right``; aggregations with ``by``/``without`` before or after their
arguments; range, subquery, ``offset`` and ``@`` suffixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Node", "keeping_names", "parse", "selectors", "without_filtering"]

COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
_PRECEDENCE = {"or": 1, "and": 2, "unless": 2, **dict.fromkeys(COMPARISONS, 3), "+": 4, "-": 4,
               "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
AGGREGATIONS = frozenset({"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                          "bottomk", "topk", "quantile", "limitk", "limit_ratio"})
_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![a-zA-Z0-9_]))
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![a-zA-Z_])|[Ii]nf\b|NaN\b)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],@:])
""", re.VERBOSE)


@dataclass
class Token:
    kind: str
    text: str
    start: int
    end: int


@dataclass
class Node:
    """A node of the tree: ``kind`` is selector, number, string, paren, call, aggregate or
    binary; ``start``/``end`` its span in the source."""

    kind: str
    start: int
    end: int
    children: list[Node] = field(default_factory=list)
    op: str = ""  # binary operator, function or aggregation name, or metric name
    matchers: str = ""  # a selector's text between braces
    on: tuple[str, ...] | None = None  # on(...) labels of a binary operation
    ignoring: tuple[str, ...] | None = None
    bool_modifier: bool = False
    op_end: int = 0  # where a binary operator (and its bool) ends in the source


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read {text[pos:pos + 20]!r} at {pos}")
        kind = m.lastgroup or ""
        if kind != "space":
            out.append(Token(kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def take(self, text: str | None = None) -> Token:
        tok = self.peek()
        if tok is None or (text is not None and tok.text != text):
            raise ValueError(f"expected {text!r} at {tok.start if tok else 'end'} in {self.text!r}")
        self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.text.lower() in texts

    def labels(self) -> tuple[str, ...]:
        self.take("(")
        names: list[str] = []
        while not self.at(")"):
            names.append(self.take().text)
            if self.at(","):
                self.take()
        self.take(")")
        return tuple(names)

    def expr(self, min_prec: int = 1) -> Node:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok is None:
                return left
            op = tok.text.lower()
            prec = _PRECEDENCE.get(op)
            if prec is None or prec < min_prec:
                return left
            self.take()
            node = Node("binary", left.start, left.end, op=op, op_end=tok.end)
            if self.at("bool"):
                node.bool_modifier = True
                node.op_end = self.take().end
            if self.at("on", "ignoring"):
                which = self.take().text.lower()
                labels = self.labels()
                node.on, node.ignoring = (labels, None) if which == "on" else (None, labels)
            if self.at("group_left", "group_right"):
                self.take()
                if self.at("("):
                    self.labels()
            right = self.expr(prec if op == "^" else prec + 1)
            node.children = [left, right]
            node.end = right.end
            left = node

    def unary(self) -> Node:
        if self.at("-", "+"):
            sign = self.take()
            inner = self.unary()
            return Node("call", sign.start, inner.end, [inner], op="unary" + sign.text)
        return self.suffixed(self.primary())

    def suffixed(self, node: Node) -> Node:
        while True:
            if self.at("["):
                while not self.at("]"):
                    self.take()
                node.end = self.take("]").end
            elif self.at("offset"):
                self.take()
                if self.at("-"):
                    self.take()
                node.end = self.take().end
            elif self.at("@"):
                self.take()
                node.end = self.take().end
                if self.at("("):
                    self.take("(")
                    node.end = self.take(")").end
            else:
                return node

    def args(self) -> tuple[list[Node], int]:
        self.take("(")
        args: list[Node] = []
        while not self.at(")"):
            args.append(self.expr())
            if self.at(","):
                self.take()
        return args, self.take(")").end

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "number":
            return Node("number", tok.start, tok.end)
        if tok.kind == "string":
            return Node("string", tok.start, tok.end)
        if tok.text == "(":
            inner = self.expr()
            return Node("paren", tok.start, self.take(")").end, [inner])
        if tok.text == "{":
            return self.selector(tok, "")
        if tok.kind != "ident":
            raise ValueError(f"unexpected {tok.text!r} at {tok.start} in {self.text!r}")
        name = tok.text.lower()
        if name in AGGREGATIONS and (self.at("(") or self.at("by", "without")):
            if self.at("by", "without"):
                self.take()
                self.labels()
            args, end = self.args()
            if self.at("by", "without"):
                self.take()
                self.labels()
                end = self.toks[self.i - 1].end
            return Node("aggregate", tok.start, end, args, op=name)
        if self.at("("):
            args, end = self.args()
            return Node("call", tok.start, end, args, op=name)
        if self.at("{"):
            return self.selector(self.take(), tok.text, tok.start)
        return Node("selector", tok.start, tok.end, op=tok.text)

    def selector(self, brace: Token, name: str, start: int | None = None) -> Node:
        while not self.at("}"):
            self.take()
        end = self.take("}")
        return Node("selector", brace.start if start is None else start, end.end, op=name,
                    matchers=self.text[brace.end:end.start])


def parse(text: str) -> Node:
    parser = _Parser(text)
    node = parser.expr()
    if parser.peek() is not None:
        raise ValueError(f"unexpected {parser.peek()!r} in {text!r}")
    return node


def _walk(node: Node) -> list[Node]:
    out = [node]
    for child in node.children:
        out += _walk(child)
    return out


def selectors(text: str) -> list[str]:
    """Each vector selector of *text* as a query of its own (name and matchers, range and
    offset kept; a leading comma in the matchers, which Prometheus refuses, dropped)."""
    out = []
    for node in _walk(parse(text)):
        if node.kind == "selector":
            matchers = node.matchers.strip().lstrip(",").strip()
            source = text[node.start:node.end]
            suffix = source[source.rindex("}") + 1:] if "}" in source else source[len(node.op):]
            range_free = re.sub(r"^\s*\[[^\]]*\]", "", suffix)  # a range vector is queried as an instant one
            out.append(f"{node.op}{{{matchers}}}{range_free}")
    return out


def without_filtering(text: str) -> str:
    """*text* with every comparison as a bool comparison, except on the right of ``unless``."""
    inserts: list[int] = []

    def visit(node: Node, excluded: bool) -> None:
        if node.kind == "binary" and node.op in COMPARISONS and not node.bool_modifier and not excluded:
            inserts.append(node.op_end)
        for i, child in enumerate(node.children):
            visit(child, excluded or (node.kind == "binary" and node.op == "unless" and i == 1))

    visit(parse(text), False)
    for pos in sorted(inserts, reverse=True):
        text = text[:pos] + " bool" + text[pos:]
    return text


_NEGATION = {"==": "!=", "!=": "==", ">": "<=", "<=": ">", "<": ">=", ">=": "<"}


def keeping_names(text: str) -> str:
    """*text* with every comparison ``a op b`` as ``((a op b) or (a not-op b))``, except
    bool comparisons and those on the right of ``unless``."""

    def render(node: Node, excluded: bool) -> str:
        parts = [render(c, excluded or (node.kind == "binary" and node.op == "unless" and i == 1))
                 for i, c in enumerate(node.children)]
        if node.kind == "binary" and node.op in COMPARISONS and not node.bool_modifier and not excluded:
            left, right = node.children
            op_start = node.op_end - len(node.op)
            between = text[left.end:right.start]
            negated = text[left.end:op_start] + _NEGATION[node.op] + text[node.op_end:right.start]
            return f"(({parts[0]}{between}{parts[1]}) or ({parts[0]}{negated}{parts[1]}))"
        out, pos = [], node.start
        for child, rendered in zip(node.children, parts, strict=True):
            out += [text[pos:child.start], rendered]
            pos = child.end
        out.append(text[pos:node.end])
        return "".join(out)

    return render(parse(text), False)
