"""From expression text to a small tree of whitelisted nodes, and the type of that tree.

Python's parser does the grammar; this module refuses every node kind it does not know (calls
other than the listed functions, attributes, subscripts, lambdas, comprehensions, f-strings,
walrus…) and bounds size, depth and `**` exponents, so evaluating a tree that parsed is cheap
and safe. Errors name the character position (1-based) in the text.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Literal

Kind = Literal["number", "string"]
NUMBER: Kind = "number"
STRING: Kind = "string"

MAX_NODES = 256
MAX_DEPTH = 32
MAX_EXPONENT = 64
MAX_BUCKET_EDGES = 64


class ExpressionError(ValueError):
    """A refused expression; `position` is the 1-based character it points at (0: none)."""

    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(f"{message} (at character {position})" if position else message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Const:
    value: float | str
    pos: int


@dataclass(frozen=True)
class Column:
    name: str
    pos: int


@dataclass(frozen=True)
class Unary:
    op: Literal["-", "not"]
    operand: Node
    pos: int


@dataclass(frozen=True)
class Binary:
    """Arithmetic (+ - * / ** %) and one comparison (== != < <= > >=)."""

    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True)
class Logical:
    op: Literal["and", "or"]
    operands: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class IfElse:
    condition: Node
    then: Node
    otherwise: Node
    pos: int


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class Bucket:
    value: Node
    edges: tuple[float, ...]
    pos: int


Node = Const | Column | Unary | Binary | Logical | IfElse | Call | Bucket

COMPARISONS = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
ARITHMETIC = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.Mod: "%",
}

# name → (argument kinds, result kind); None in the arguments: a number or a string (dates).
UNARY_NUMERIC = ("log", "log1p", "exp", "sqrt", "abs")
DATE_PARTS = ("year", "month", "day", "weekday", "hour")
FUNCTIONS: dict[str, tuple[tuple[Kind | None, ...], Kind]] = {
    **{name: ((NUMBER,), NUMBER) for name in UNARY_NUMERIC},
    **{name: ((None,), NUMBER) for name in DATE_PARTS},
    "ratio": ((NUMBER, NUMBER), NUMBER),
    "clip": ((NUMBER, NUMBER, NUMBER), NUMBER),
    "length": ((STRING,), NUMBER),
    "contains": ((STRING, STRING), NUMBER),
    "lower": ((STRING,), STRING),
    "upper": ((STRING,), STRING),
}
VARIADIC = ("min", "max")  # two or more numbers
SPECIAL = ("bucket", "col")
ALL_FUNCTIONS = sorted([*FUNCTIONS, *VARIADIC, *SPECIAL])


def parse(text: str) -> Node:
    """The whitelisted tree of `text`, or ExpressionError naming what is refused and where."""
    return _parse_cached(text)


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Node:
    # Parsed trees are immutable, so the server re-parses each expression once, not per request.
    # Leading blanks (a YAML block scalar) are no syntax error; positions still count them.
    stripped = text.lstrip()
    try:
        return _parse_stripped(stripped)
    except ExpressionError as error:
        if not error.position:
            raise
        shift = len(text) - len(stripped)
        raise ExpressionError(error.message, error.position + shift) from None


def _parse_stripped(text: str) -> Node:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        position = _position(text, error.lineno or 1, (error.offset or 1) - 1, chars=True)
        raise ExpressionError(f"syntax error: {error.msg}", position) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"too deeply nested (at most {MAX_DEPTH} levels)") from None
    except ValueError as error:  # e.g. a NUL character
        raise ExpressionError(str(error)) from None
    count = sum(1 for _ in ast.walk(tree))  # iterative: safe however deep the tree is
    if count > MAX_NODES:
        raise ExpressionError(f"too large: {count} syntax nodes, at most {MAX_NODES}")
    return _Converter(text).convert(tree.body, 0)


class _Converter:
    def __init__(self, text: str) -> None:
        self.text = text

    def pos(self, node: ast.AST) -> int:
        return _position(self.text, getattr(node, "lineno", 1), getattr(node, "col_offset", 0))

    def fail(self, message: str, node: ast.AST) -> ExpressionError:
        return ExpressionError(message, self.pos(node))

    def convert(self, node: ast.expr, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.fail(f"too deeply nested (at most {MAX_DEPTH} levels)", node)
        depth += 1
        pos = self.pos(node)
        match node:
            case ast.Constant(value=value):
                return Const(self.constant(value, node), pos)
            case ast.Name(id=name):
                return Column(name, pos)
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return Unary("-", self.convert(operand, depth), pos)
            case ast.UnaryOp(op=ast.UAdd(), operand=operand):
                return self.convert(operand, depth)
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                return Unary("not", self.convert(operand, depth), pos)
            case ast.BinOp(op=op, left=left, right=right) if type(op) in ARITHMETIC:
                symbol = ARITHMETIC[type(op)]
                if symbol == "**":
                    self.exponent(right)
                return Binary(symbol, self.convert(left, depth), self.convert(right, depth), pos)
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                if not all(type(op) in COMPARISONS for op in ops):
                    raise self.fail("only == != < <= > >= compare (no 'in', 'is')", node)
                operands = [self.convert(left, depth)] + [
                    self.convert(c, depth) for c in comparators
                ]
                pairs = tuple(
                    Binary(COMPARISONS[type(op)], operands[i], operands[i + 1], pos)
                    for i, op in enumerate(ops)
                )
                return pairs[0] if len(pairs) == 1 else Logical("and", pairs, pos)
            case ast.BoolOp(op=op, values=values):
                kind: Literal["and", "or"] = "and" if isinstance(op, ast.And) else "or"
                return Logical(kind, tuple(self.convert(v, depth) for v in values), pos)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                return IfElse(
                    self.convert(test, depth),
                    self.convert(body, depth),
                    self.convert(orelse, depth),
                    pos,
                )
            case ast.Call():
                return self.call(node, depth)
        raise self.fail(f"{_describe(node)} is not allowed in an expression", node)

    def constant(self, value: object, node: ast.AST) -> float | str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise self.fail("a number too large for float64", node)
            return number
        raise self.fail(f"constant {value!r} is not allowed: only numbers and 'text'", node)

    def exponent(self, node: ast.expr) -> None:
        # A constant bound keeps `**` from being an amplifier; x ** y is exp(y * log(x)).
        inner = node.operand if isinstance(node, ast.UnaryOp) else node
        if not (
            isinstance(node, ast.Constant | ast.UnaryOp)
            and (not isinstance(node, ast.UnaryOp) or isinstance(node.op, ast.USub | ast.UAdd))
            and isinstance(inner, ast.Constant)
            and isinstance(inner.value, int | float)
            and not isinstance(inner.value, bool)
            and abs(inner.value) <= MAX_EXPONENT
        ):
            raise self.fail(
                f"the exponent of ** must be a number between -{MAX_EXPONENT} and "
                f"{MAX_EXPONENT} (write exp(y * log(x)) for a computed one)",
                node,
            )

    def call(self, node: ast.Call, depth: int) -> Node:
        pos = self.pos(node)
        if not isinstance(node.func, ast.Name):
            raise self.fail("only the functions of docs/features.md may be called", node)
        name = node.func.id
        if name not in ALL_FUNCTIONS:
            raise self.fail(
                f"unknown function {name!r}; known: {', '.join(ALL_FUNCTIONS)}", node.func
            )
        if node.keywords:
            raise self.fail(f"{name}() takes no keyword arguments", node.keywords[0])
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.fail(f"{name}() takes no *arguments", node)
        args = node.args
        if name == "col":
            if len(args) != 1 or not (
                isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)
            ):
                raise self.fail("col() takes one 'column name' in quotes", node)
            return Column(args[0].value, pos)
        if name == "bucket":
            if len(args) != 2 or not isinstance(args[1], ast.List):
                raise self.fail("bucket(x, [edges...]) takes a value and a list of numbers", node)
            edges = tuple(self.edge(edge) for edge in args[1].elts)
            if not edges or len(edges) > MAX_BUCKET_EDGES:
                raise self.fail(f"bucket() takes 1 to {MAX_BUCKET_EDGES} edges", args[1])
            if any(b <= a for a, b in pairwise(edges)):
                raise self.fail("bucket() edges must increase", args[1])
            return Bucket(self.convert(args[0], depth), edges, pos)
        if name in VARIADIC:
            if len(args) < 2:
                raise self.fail(f"{name}() takes two or more arguments", node)
        elif len(args) != len(FUNCTIONS[name][0]):
            count = len(FUNCTIONS[name][0])
            raise self.fail(
                f"{name}() takes {count} argument{'s' if count > 1 else ''}, got {len(args)}", node
            )
        return Call(name, tuple(self.convert(arg, depth) for arg in args), pos)

    def edge(self, node: ast.expr) -> float:
        negative = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
        inner = node.operand if isinstance(node, ast.UnaryOp) else node
        if not (
            isinstance(inner, ast.Constant)
            and isinstance(inner.value, int | float)
            and not isinstance(inner.value, bool)
        ):
            raise self.fail("bucket() edges must be numbers", node)
        value = self.constant(inner.value, inner)
        assert isinstance(value, float)
        return -value if negative else value


def infer_kind(node: Node, columns: Mapping[str, Kind]) -> Kind:
    """The kind of value `node` computes, given the kinds of the columns it may read; refuses
    unknown columns and operands of the wrong kind."""
    match node:
        case Const(value=value):
            return STRING if isinstance(value, str) else NUMBER
        case Column(name=name, pos=pos):
            if name not in columns:
                raise ExpressionError(
                    f"unknown column {name!r}; known: {', '.join(sorted(columns))}", pos
                )
            return columns[name]
        case Unary(op=op, operand=operand, pos=pos):
            _expect(infer_kind(operand, columns), NUMBER, f"'{op}'", pos)
            return NUMBER
        case Binary(op=op, left=left, right=right, pos=pos):
            kinds = (infer_kind(left, columns), infer_kind(right, columns))
            if op in ("==", "!=", "<", "<=", ">", ">="):
                if kinds[0] != kinds[1]:
                    raise ExpressionError(f"'{op}' compares a {kinds[0]} with a {kinds[1]}", pos)
                return NUMBER
            if op == "+" and kinds == (STRING, STRING):
                return STRING
            for kind in kinds:
                _expect(kind, NUMBER, f"'{op}'", pos)
            return NUMBER
        case Logical(op=op, operands=operands, pos=pos):
            for operand in operands:
                _expect(infer_kind(operand, columns), NUMBER, f"'{op}'", pos)
            return NUMBER
        case IfElse(condition=condition, then=then, otherwise=otherwise, pos=pos):
            _expect(infer_kind(condition, columns), NUMBER, "the condition of 'if'", pos)
            kinds = (infer_kind(then, columns), infer_kind(otherwise, columns))
            if kinds[0] != kinds[1]:
                raise ExpressionError(
                    f"'a if c else b' gives a {kinds[0]} or a {kinds[1]}: both must be one kind",
                    pos,
                )
            return kinds[0]
        case Bucket(value=value, pos=pos):
            _expect(infer_kind(value, columns), NUMBER, "bucket()", pos)
            return NUMBER
        case Call(function=function, args=args, pos=pos):
            if function in VARIADIC:
                for arg in args:
                    _expect(infer_kind(arg, columns), NUMBER, f"{function}()", pos)
                return NUMBER
            expected, result = FUNCTIONS[function]
            for arg, wanted in zip(args, expected, strict=True):
                actual = infer_kind(arg, columns)
                if wanted is not None:
                    _expect(actual, wanted, f"{function}()", pos)
            return result
    raise AssertionError(f"unknown node {node!r}")


def _expect(actual: Kind, expected: Kind, where: str, pos: int) -> None:
    if actual != expected:
        raise ExpressionError(f"{where} takes a {expected}, got a {actual}", pos)


def columns_of(node: Node) -> Iterator[str]:
    """Every column name `node` reads, in order of appearance (repeats included)."""
    match node:
        case Column(name=name):
            yield name
        case Unary(operand=operand):
            yield from columns_of(operand)
        case Binary(left=left, right=right):
            yield from columns_of(left)
            yield from columns_of(right)
        case Logical(operands=operands) | Call(args=operands):
            for operand in operands:
                yield from columns_of(operand)
        case IfElse(condition=condition, then=then, otherwise=otherwise):
            for part in (condition, then, otherwise):
                yield from columns_of(part)
        case Bucket(value=value):
            yield from columns_of(value)


def _position(text: str, line: int, column: int, chars: bool = False) -> int:
    """1-based character index of (line, column); ast columns count UTF-8 bytes."""
    lines = text.splitlines(keepends=True) or [""]
    line = max(1, min(line, len(lines)))
    before = sum(len(previous) for previous in lines[: line - 1])
    current = lines[line - 1]
    if not chars:
        column = len(current.encode()[:column].decode(errors="ignore"))
    return before + column + 1


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access (a.b)",
        ast.Subscript: "indexing (a[i])",
        ast.Lambda: "lambda",
        ast.NamedExpr: "assignment (:=)",
        ast.JoinedStr: "an f-string",
        ast.List: "a list (only as bucket()'s edges)",
        ast.Tuple: "a tuple",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a generator",
        ast.Await: "await",
        ast.Yield: "yield",
        ast.YieldFrom: "yield",
        ast.Starred: "*unpacking",
        ast.Slice: "a slice",
    }
    if isinstance(node, ast.BinOp):
        return f"operator {type(node.op).__name__}"
    if isinstance(node, ast.UnaryOp):
        return f"operator {type(node.op).__name__}"
    return names.get(type(node), type(node).__name__)
