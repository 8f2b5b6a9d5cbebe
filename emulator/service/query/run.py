"""Running a checked query over twins, a page at a time. Pure.

Semantics, as IoT Hub's documents say or as the SQL dialect it descends from behaves (sources in
docs/protocol/hub-service-rest.md §11):

- Comparing values of different types, or anything with undefined, an object or an array, gives
  undefined, never an error. AND, OR and NOT are three-valued: false AND undefined is false, true
  OR undefined is true, NOT undefined is undefined. A twin is in the result only when its
  condition is exactly true (so `NOT (version = 'x')` matches nothing: `version` is a number).
- `x IN [..]` is `x = a OR x = b ...` and `x NIN [..]` its negation, with the same three values.
- Arithmetic is on numbers only; division or remainder by zero and overflow give undefined.
- STARTSWITH and ENDSWITH compare strings case-sensitively; ARRAY_CONTAINS looks for an equal
  element; IS_DEFINED is true for any value, null included.
- Projections leave out fields whose value is undefined. Aggregates: COUNT() counts the group;
  SUM, AVG, MIN and MAX use the group's numbers and are left out when there are none. Groups come
  in the order their first twin appears, twins in device id order; a twin whose GROUP BY property
  is undefined falls in a group whose key field is left out.

Paging: twins are visited in device id order; a continuation token records the last device id
sent and how many rows went out (for TOP), or for aggregate results how many rows were sent. It
is tied to the query text by a fingerprint, so a token from another query is refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

from emulator.service.query.tree import (
    PRIMITIVES,
    UNDEFINED,
    Aggregate,
    Arith,
    Array,
    Call,
    Column,
    Compare,
    Const,
    Grouping,
    Logic,
    Member,
    Negate,
    Node,
    Not,
    Path,
    QueryError,
    kind,
    number,
    same,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Cursor",
    "Page",
    "Query",
    "decode_cursor",
    "evaluate",
    "page_size",
]

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 100

Document = Mapping[str, Any]


def evaluate(node: Node, document: Document) -> Any:
    """The value of `node` for one twin."""
    match node:
        case Path(segments=segments):
            return _lookup(document, segments)
        case Const(value=value):
            return value
        case Compare(operator=operator, left=left, right=right):
            return _compare(operator, evaluate(left, document), evaluate(right, document))
        case Logic(conjunction=conjunction, operands=operands):
            return _logic(conjunction, operands, document)
        case Not(operand=operand):
            value = evaluate(operand, document)
            return (not value) if isinstance(value, bool) else UNDEFINED
        case Member():
            return _member(node, evaluate(node.operand, document))
        case Call(name=name, args=args):
            return _call(name, [evaluate(arg, document) for arg in args])
        case Arith(first=first, rest=rest):
            value = evaluate(first, document)
            for operator, operand in rest:
                value = _arith(operator, value, evaluate(operand, document))
            return value
        case Negate(operand=operand):
            value = evaluate(operand, document)
            return number(-value) if kind(value) == "number" else UNDEFINED
        case Array(items=items):
            values = [evaluate(item, document) for item in items]
            return [value for value in values if value is not UNDEFINED]
    raise TypeError(f"not an expression: {node!r}")


def _lookup(document: Document, segments: tuple[str, ...]) -> Any:
    value: Any = document
    for segment in segments:
        if not isinstance(value, Mapping) or segment not in value:
            return UNDEFINED
        value = value[segment]
    return value


def _compare(operator: str, left: Any, right: Any) -> Any:
    type_ = kind(left)
    if type_ != kind(right) or type_ not in PRIMITIVES:
        return UNDEFINED
    if operator == "=":
        return left == right
    if operator in ("!=", "<>"):
        return left != right
    if type_ == "null":
        return operator in ("<=", ">=")
    if operator == "<":
        return left < right
    if operator == ">":
        return left > right
    if operator == "<=":
        return left <= right
    return left >= right


def _logic(conjunction: bool, operands: tuple[Node, ...], document: Document) -> Any:
    decisive = not conjunction  # false decides an AND, true an OR
    result: Any = conjunction
    for operand in operands:
        value = evaluate(operand, document)
        if value is decisive:
            return decisive
        if not isinstance(value, bool):
            result = UNDEFINED
    return result


def _member(node: Member, value: Any) -> Any:
    type_ = kind(value)
    if not node.keys:
        found = False  # an OR of no equalities
    elif type_ not in PRIMITIVES:
        return UNDEFINED
    elif (type_, value) in node.keys:
        found = True
    elif node.kinds <= {type_}:
        found = False
    else:
        return UNDEFINED  # no match, and `x = c` is undefined for a constant of another type
    return found is not node.negated


def _call(name: str, args: list[Any]) -> Any:
    if name == "IS_DEFINED":
        return args[0] is not UNDEFINED
    if name in ("STARTSWITH", "ENDSWITH"):
        text, affix = args
        if not isinstance(text, str) or not isinstance(affix, str):
            return UNDEFINED
        return text.startswith(affix) if name == "STARTSWITH" else text.endswith(affix)
    array, wanted = args  # ARRAY_CONTAINS
    if not isinstance(array, list) or wanted is UNDEFINED:
        return UNDEFINED
    return any(same(element, wanted) for element in array)


def _arith(operator: str, left: Any, right: Any) -> Any:
    if kind(left) != "number" or kind(right) != "number":
        return UNDEFINED
    if operator == "+":
        return number(left + right)
    if operator == "-":
        return number(left - right)
    if operator == "*":
        return number(left * right)
    if right == 0:
        return UNDEFINED
    if operator == "/":
        return number(left / right)
    remainder = math.fmod(left, right)  # takes the dividend's sign, as .NET's % does
    integral = isinstance(left, int) and isinstance(right, int)
    return number(int(remainder) if integral else remainder)


def _aggregate(aggregate: Aggregate, documents: Sequence[Document]) -> Any:
    if aggregate.argument is None:  # COUNT()
        return len(documents)
    values = [evaluate(aggregate.argument, document) for document in documents]
    numbers = [value for value in values if kind(value) == "number"]
    if not numbers:
        return UNDEFINED
    if aggregate.name == "SUM":
        return number(math.fsum(numbers))
    if aggregate.name == "AVG":
        return number(math.fsum(numbers) / len(numbers))
    return min(numbers) if aggregate.name == "MIN" else max(numbers)


def _group_key(value: Any) -> tuple[str, Any]:
    type_ = kind(value)
    if type_ in ("array", "object"):
        return (type_, json.dumps(value, sort_keys=True))
    return (type_, value)


@dataclass(frozen=True, kw_only=True)
class Cursor:
    """Where a page starts: after a device id (rows) or after `skip` rows (aggregates)."""

    after: str | None = None
    emitted: int = 0
    skip: int = 0


@dataclass(frozen=True, kw_only=True)
class Page:
    """One page of results and the continuation token of the next, if there is one."""

    items: list[Any]
    item_type: str
    continuation: str | None


@dataclass(frozen=True, kw_only=True)
class Query:
    """A checked query: `SELECT *` (no columns, no grouping), a projection or an aggregate."""

    text: str = field(repr=False)
    top: int | None
    where: Node | None
    columns: tuple[Column, ...] | None = None
    grouping: Grouping | None = None

    @property
    def item_type(self) -> str:
        """`x-ms-item-type`: whole twins for `SELECT *`, plain objects otherwise."""
        return "twin" if self.columns is None and self.grouping is None else "raw"

    @functools.cached_property
    def fingerprint(self) -> str:
        """Ties a continuation token to the query it continues."""
        return hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def matches(self, document: Document) -> bool:
        """Whether the WHERE condition is exactly true for this twin."""
        return self.where is None or evaluate(self.where, document) is True

    def row(self, document: Document) -> Any:
        """The result item for one matching twin of a row query."""
        if self.columns is None:
            return document
        row: dict[str, Any] = {}
        for column in self.columns:
            value = evaluate(column.expression, document)
            if value is not UNDEFINED:
                row[column.name] = value
        return row

    def groups(self, grouping: Grouping, documents: Iterable[Document]) -> list[dict[str, Any]]:
        """The rows of an aggregate query: one per group."""
        grouped: dict[tuple[str, Any], tuple[Any, list[Document]]] = {}
        for document in documents:
            if self.matches(document):
                key = UNDEFINED if grouping.key is None else evaluate(grouping.key, document)
                grouped.setdefault(_group_key(key), (key, []))[1].append(document)
        if grouping.key is None and not grouped:
            grouped[_group_key(UNDEFINED)] = (UNDEFINED, [])  # COUNT() of nothing is 0
        rows = []
        for key, members in grouped.values():
            row: dict[str, Any] = {}
            for name, aggregate in grouping.columns:
                value = key if aggregate is None else _aggregate(aggregate, members)
                if value is not UNDEFINED:
                    row[name] = value
            rows.append(row)
        return rows

    def page(
        self,
        ids: Iterable[str],
        load: Callable[[str], Document | None],
        cursor: Cursor,
        size: int,
    ) -> Page:
        """The page `cursor` points at, of `size` items at most, over the twins `load(id)` of
        `ids` (sorted; a twin `load` no longer finds is skipped)."""
        if self.grouping is not None:
            documents = (document for device_id in ids if (document := load(device_id)))
            rows = self.groups(self.grouping, documents)[: self.top]
            end = cursor.skip + size
            token = self._token({"skip": end}) if end < len(rows) else None
            return Page(items=rows[cursor.skip : end], item_type="raw", continuation=token)
        room = None if self.top is None else max(0, self.top - cursor.emitted)
        limit = size if room is None else min(size, room)
        items: list[Any] = []
        last: str | None = None
        more = False
        for device_id in ids:
            if cursor.after is not None and device_id <= cursor.after:
                continue
            document = load(device_id)
            if document is None or not self.matches(document):
                continue
            if len(items) >= limit:
                more = room is None or len(items) < room  # another match, and TOP allows it
                break
            items.append(self.row(document))
            last = device_id
        token = None
        if more and last is not None:
            token = self._token({"after": last, "n": cursor.emitted + len(items)})
        return Page(items=items, item_type=self.item_type, continuation=token)

    def _token(self, position: dict[str, Any]) -> str:
        raw = json.dumps({"q": self.fingerprint, **position}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


def decode_cursor(token: str | None, query: Query) -> Cursor:
    """The position an `x-ms-continuation` token (from a page of this same query) points at."""
    if not token:
        return Cursor()
    problem = QueryError(
        "not a continuation token this hub issued for this query", field="x-ms-continuation"
    )
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (binascii.Error, UnicodeError, ValueError):
        raise problem from None
    if not isinstance(value, dict) or value.get("q") != query.fingerprint:
        raise problem
    if query.grouping is not None:
        skip = value.get("skip")
        if not _count(skip):
            raise problem
        return Cursor(skip=skip)
    after, emitted = value.get("after"), value.get("n")
    if not isinstance(after, str) or not _count(emitted):
        raise problem
    return Cursor(after=after, emitted=emitted)


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def page_size(header: str | None) -> int:
    """`x-ms-max-item-count`: a whole number of at least 1; above the maximum, the maximum."""
    if header is None:
        return DEFAULT_PAGE_SIZE
    digits = header.strip()
    significant = digits.lstrip("0")
    if not (digits.isascii() and digits.isdigit()) or not significant:
        raise QueryError("expected a whole number of at least 1", field="x-ms-max-item-count")
    return MAX_PAGE_SIZE if len(significant) > 6 else min(int(significant), MAX_PAGE_SIZE)
