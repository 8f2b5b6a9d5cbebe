"""The values a query computes with and the syntax tree `syntax` builds. Pure.

A value is a JSON value as `json.loads` makes it, or `UNDEFINED`: the value of a property that is
not there. `kind` names a value's type the way the query language sees it (`true` is a boolean,
never the number 1). Numbers stay finite; integers beyond 2**53 become floats, as IoT Hub's
numbers are doubles.

Every expression node knows its nesting depth and refuses to be built deeper than `MAX_NESTING`,
so evaluation, which recurses once per level, never meets Python's recursion limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "MAX_NESTING",
    "PRIMITIVES",
    "UNDEFINED",
    "Aggregate",
    "Arith",
    "Array",
    "Call",
    "Column",
    "Compare",
    "Const",
    "Grouping",
    "Logic",
    "Member",
    "Negate",
    "Node",
    "Not",
    "Path",
    "QueryError",
    "kind",
    "number",
    "same",
]

MAX_NESTING: Final = 64
_SAFE_INTEGER: Final = 2**53


class QueryError(Exception):
    """A query (or a paging header) that cannot be run: which field, and what is wrong."""

    def __init__(self, message: str, *, field: str = "query") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class _Undefined:
    """The value of a property that is not there."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Final = _Undefined()
PRIMITIVES: Final = frozenset({"null", "boolean", "number", "string"})


def kind(value: Any) -> str:
    """`undefined`, `null`, `boolean`, `number`, `string`, `array` or `object`."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def same(left: Any, right: Any) -> bool:
    """JSON equality that keeps types apart (true is not 1)."""
    type_ = kind(left)
    if type_ != kind(right):
        return False
    if type_ == "array":
        return len(left) == len(right) and all(map(same, left, right))
    if type_ == "object":
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return bool(left == right)


def number(value: int | float) -> Any:
    """`value` as a query number, or `UNDEFINED` when it is not finite."""
    if isinstance(value, int) and abs(value) > _SAFE_INTEGER:
        try:
            value = float(value)
        except OverflowError:
            return UNDEFINED
    if isinstance(value, float) and not math.isfinite(value):
        return UNDEFINED
    return value


@dataclass(frozen=True)
class Node:
    """An expression."""

    depth: int = field(init=False, default=1, compare=False)

    def _nest(self, *children: Node) -> None:
        depth = 1 + max((child.depth for child in children), default=0)
        if depth > MAX_NESTING:
            raise QueryError(f"expressions may nest at most {MAX_NESTING} levels deep")
        object.__setattr__(self, "depth", depth)


@dataclass(frozen=True)
class Const(Node):
    """A constant."""

    value: Any


@dataclass(frozen=True)
class Array(Node):
    """`[a, b, ...]`."""

    items: tuple[Node, ...]

    def __post_init__(self) -> None:
        self._nest(*self.items)


@dataclass(frozen=True)
class Path(Node):
    """A property of the twin: its segments, the twin's own field names in the twin's spelling."""

    segments: tuple[str, ...]


@dataclass(frozen=True)
class Call(Node):
    """A function call; the name upper-case, the argument count checked."""

    name: str
    args: tuple[Node, ...]

    def __post_init__(self) -> None:
        self._nest(*self.args)


@dataclass(frozen=True)
class Not(Node):
    """`NOT x`."""

    operand: Node

    def __post_init__(self) -> None:
        self._nest(self.operand)


@dataclass(frozen=True)
class Logic(Node):
    """`a AND b AND ...` (conjunction) or `a OR b OR ...`, flat."""

    conjunction: bool
    operands: tuple[Node, ...]

    def __post_init__(self) -> None:
        self._nest(*self.operands)


@dataclass(frozen=True)
class Compare(Node):
    """`a = b`, `a != b`, `a <> b`, `a < b`, `a > b`, `a <= b`, `a >= b`."""

    operator: str
    left: Node
    right: Node

    def __post_init__(self) -> None:
        self._nest(self.left, self.right)


@dataclass(frozen=True)
class Member(Node):
    """`x IN [constants]` or `x NIN [...]`: the constants as (kind, value) pairs."""

    operand: Node
    keys: frozenset[tuple[str, Any]]
    negated: bool
    kinds: frozenset[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        self._nest(self.operand)
        object.__setattr__(self, "kinds", frozenset(type_ for type_, _ in self.keys))


@dataclass(frozen=True)
class Arith(Node):
    """`a + b - c ...` or `a * b / c % d ...`, flat and evaluated left to right."""

    first: Node
    rest: tuple[tuple[str, Node], ...]

    def __post_init__(self) -> None:
        self._nest(self.first, *(operand for _, operand in self.rest))


@dataclass(frozen=True)
class Negate(Node):
    """`-x`."""

    operand: Node

    def __post_init__(self) -> None:
        self._nest(self.operand)


@dataclass(frozen=True)
class Aggregate:
    """COUNT() (no argument), SUM(x), AVG(x), MIN(x), MAX(x): only a whole SELECT item."""

    name: str
    argument: Node | None
    at: str = field(compare=False)  # "line L, column C", for errors


@dataclass(frozen=True)
class Column:
    """One field of a projection's result objects."""

    name: str
    expression: Node


@dataclass(frozen=True)
class Grouping:
    """An aggregate query: the GROUP BY key (None: one group of every twin) and its columns,
    each an aggregate or, when None, the group's key."""

    key: Path | None
    columns: tuple[tuple[str, Aggregate | None], ...]
