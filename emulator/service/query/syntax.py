"""Parsing a query: text in, a checked `run.Query` out, or a `QueryError` saying where and why. Pure.

Why lark: the grammar is small and LALR(1), so lark's LALR parser (a well-kept library the field
uses) parses in linear time, its contextual lexer lets a property be called `select` after a dot
while `SELECT` stays a keyword, and its errors carry the position and the expected terminals. The
syntax tree is built by an inline transformer during the parse: nothing recurses over the input.

Lexical rules (docs/protocol/hub-service-rest.md §11): keywords are case-insensitive; a name is
letters, digits, `_` and `$`, not starting with a digit, and may contain `-` between them (IoT Hub
accepts property names such as `KeyQuery-1b2c` unquoted, so `a-b` is one name: write `a - b` to
subtract); after a dot a segment may also start with a digit; `[[any name]]` escapes a segment,
and `group` after a dot must be escaped (`tags.[[group]]`), as IoT Hub documents. Strings take
single or double quotes with the escapes \\' \\" \\\\ and \\uXXXX only.

Names of the twin's own fields (`DeviceId`, `properties.Reported`) are matched case-insensitively
and put in the twin's spelling here; keys inside `tags` and the desired and reported properties
are user data and stay as written (twin keys are case-sensitive). A projection's field is named by
its alias, else the path's last segment, else `$1`, `$2`... by position.

Bounds: at most `MAX_QUERY_LENGTH` characters (IoT Hub's documented limit) and `MAX_NESTING`
levels (tree.py); numbers must be finite; TOP is a whole number up to 2**31 - 1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final, cast

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from emulator.service.query.run import Query
from emulator.service.query.tree import (
    MAX_NESTING,
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
)

__all__ = ["MAX_NESTING", "MAX_QUERY_LENGTH", "MAX_TOP", "parse"]

MAX_QUERY_LENGTH: Final = 8192
MAX_TOP: Final = 2**31 - 1

_KEYWORDS: Final = (
    "select",
    "from",
    "where",
    "group",
    "by",
    "as",
    "and",
    "or",
    "not",
    "in",
    "nin",
    "top",
    "true",
    "false",
    "null",
    "undefined",
)
_KEYWORD_TERMINALS: Final = "\n".join(f'_{word.upper()}: "{word}"i' for word in _KEYWORDS)
_GRAMMAR: Final = (
    r"""
start: _SELECT top? selection _FROM source where? group_by?
top: _TOP NUMBER
?selection: STAR -> star
          | item (_COMMA item)* -> items
item: expr (_AS (NAME | ESCAPED))?
source: NAME (_DOT MEMBER)*
where: _WHERE expr
group_by: _GROUP _BY path

?expr: or_
?or_: and_ (_OR and_)*
?and_: not_ (_AND not_)*
?not_: _NOT not_ -> not_op
     | comparison
?comparison: sum
           | sum COMPARE sum -> compare
           | sum _IN array -> in_op
           | sum _NIN array -> nin_op
?sum: product ((PLUS | MINUS) product)*
?product: unary ((STAR | SLASH | PERCENT) unary)*
?unary: MINUS unary -> negate
      | primary
?primary: STRING -> string
        | NUMBER -> number
        | _TRUE -> true
        | _FALSE -> false
        | _NULL -> null
        | _UNDEFINED -> undefined
        | array
        | call
        | path
        | _LPAR expr _RPAR
call: NAME _LPAR (expr (_COMMA expr)*)? _RPAR
path: NAME (_DOT (MEMBER | ESCAPED))*
array: _LBRACKET (expr (_COMMA expr)*)? _RBRACKET

NAME: /(?!(?:KEYWORDS)(?![a-z0-9_$-]))[a-z_$][a-z0-9_$]*(?:-[a-z0-9_$]+)*/i
MEMBER: /[a-z0-9_$]+(?:-[a-z0-9_$]+)*/i
ESCAPED: /\[\[[^\]]*\]\]/
STRING: /'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"/
NUMBER: /0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/
COMPARE: /<=|>=|<>|!=|=|<|>/
STAR: "*"
SLASH: "/"
PERCENT: "%"
PLUS: "+"
MINUS: "-"
_DOT: "."
_COMMA: ","
_LPAR: "("
_RPAR: ")"
_LBRACKET: "["
_RBRACKET: "]"
%ignore /\s+/
""".replace("KEYWORDS", "|".join(_KEYWORDS))
    + _KEYWORD_TERMINALS
)

# What each terminal is called in an error message.
_SHOWN: Final = {
    **{f"_{word.upper()}": word.upper() for word in _KEYWORDS},
    "NAME": "a property name",
    "MEMBER": "a property name",
    "ESCAPED": "[[name]]",
    "STRING": "a string",
    "NUMBER": "a number",
    "COMPARE": "a comparison (= != <> < > <= >=)",
    "STAR": "*",
    "SLASH": "/",
    "PERCENT": "%",
    "PLUS": "+",
    "MINUS": "-",
    "_DOT": ".",
    "_COMMA": ",",
    "_LPAR": "(",
    "_RPAR": ")",
    "_LBRACKET": "[",
    "_RBRACKET": "]",
    "$END": "the end of the query",
}
_EXPRESSION_START: Final = frozenset(
    {"NAME", "STRING", "NUMBER", "MINUS", "_LPAR", "_LBRACKET", "_TRUE", "_FALSE", "_NULL"}
)
_OPERATORS: Final = frozenset(
    {"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "COMPARE", "_IN", "_NIN", "_AND", "_OR"}
)

# The twin's own fields (hub-service-rest.md §7), matched case-insensitively.
_TWIN_FIELDS: Final = {
    name.lower(): name
    for name in (
        "deviceId",
        "moduleId",
        "etag",
        "deviceEtag",
        "version",
        "status",
        "statusReason",
        "statusUpdateTime",
        "connectionState",
        "lastActivityTime",
        "cloudToDeviceMessageCount",
        "authenticationType",
        "x509Thumbprint",
        "capabilities",
        "tags",
        "properties",
        "modelId",
        "deviceScope",
        "parentScopes",
    )
}
_TWIN_CHILDREN: Final = {
    "properties": {"desired": "desired", "reported": "reported"},
    "capabilities": {"iotedge": "iotEdge"},
    "x509Thumbprint": {
        "primarythumbprint": "primaryThumbprint",
        "secondarythumbprint": "secondaryThumbprint",
    },
}

# Functions of twin queries and aggregates: name -> number of arguments.
_FUNCTIONS: Final = {"IS_DEFINED": 1, "STARTSWITH": 2, "ENDSWITH": 2, "ARRAY_CONTAINS": 2}
_AGGREGATES: Final = {"COUNT": 0, "SUM": 1, "AVG": 1, "MIN": 1, "MAX": 1}
# Documented for message routing only; IoT Hub refuses them in twin queries.
_ROUTING_ONLY: Final = frozenset(
    {
        *("AS_NUMBER", "IS_ARRAY", "IS_BOOL", "IS_NULL", "IS_NUMBER", "IS_OBJECT"),
        *("IS_PRIMITIVE", "IS_STRING", "CONCAT", "LENGTH", "LOWER", "UPPER", "SUBSTRING"),
        *("INDEX_OF", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "ABS", "EXP", "POWER"),
        *("SQUARE", "CEILING", "FLOOR", "SIGN", "SQRT"),
    }
)
_SPELLING: Final = {"STARTS_WITH": " (write STARTSWITH)", "ENDS_WITH": " (write ENDSWITH)"}
_SUPPORTED: Final = (
    f"twin queries support {', '.join(_FUNCTIONS)} and the aggregates "
    f"{', '.join(f'{name}()' for name in _AGGREGATES)}"
)


@dataclass(frozen=True)
class _Item:
    """A SELECT item before the query's shape is known."""

    name: str
    expression: Node | Aggregate


def parse(text: str) -> Query:
    """The query `text`, checked; `QueryError` names what is wrong and where."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"expected at most {MAX_QUERY_LENGTH} characters, not {len(text)}")
    if not text.strip():
        raise QueryError("expected a query such as SELECT * FROM devices")
    try:
        parts = _parser().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(error, text) from None
    return _shape(text, cast(dict[str, Any], parts))  # what `_Builder.start` returns


def _shape(text: str, parts: dict[str, Any]) -> Query:
    """A `SELECT *`, a projection or an aggregate query, and what may stand in each."""
    items: tuple[_Item, ...] | None = parts["items"]
    key: Path | None = parts["group_by"]
    base = {"text": text, "top": parts["top"], "where": parts["where"]}
    if items is None:
        if key is not None:
            raise QueryError("GROUP BY needs a SELECT list with COUNT() or another aggregate")
        return Query(**base)
    if key is None and not any(isinstance(item.expression, Aggregate) for item in items):
        columns = tuple(
            Column(name=item.name, expression=item.expression)
            for item in items
            if isinstance(item.expression, Node)
        )
        return Query(**base, columns=columns)
    grouped: list[tuple[str, Aggregate | None]] = []
    for item in items:
        if isinstance(item.expression, Aggregate):
            grouped.append((item.name, item.expression))
        elif key is not None and item.expression == key:
            grouped.append((item.name, None))
        else:
            must = f"the GROUP BY property {'.'.join(key.segments)}" if key else "in GROUP BY"
            raise QueryError(
                f"SELECT item {item.name!r} must be an aggregate "
                f"({', '.join(f'{name}()' for name in _AGGREGATES)}) or {must}"
            )
    return Query(**base, grouping=Grouping(key=key, columns=tuple(grouped)))


@functools.cache
def _parser() -> Lark:
    return Lark(
        _GRAMMAR,
        parser="lalr",
        lexer="contextual",
        maybe_placeholders=False,
        transformer=_Builder(),
    )


def _syntax_error(error: UnexpectedInput, text: str) -> QueryError:
    at = f"line {error.line}, column {error.column}"
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        body = text.rstrip()  # lark places the end at the last token; say where the text ends
        at = f"line {body.count(chr(10)) + 1}, column {len(body) - body.rfind(chr(10))}"
    if isinstance(error, UnexpectedCharacters):
        char = text[error.pos_in_stream or 0]
        if char in "'\"":
            return QueryError(f"at {at}: unterminated string")
        return QueryError(f"at {at}: unexpected character {char!r}")
    expected = set(error.expected) if isinstance(error, UnexpectedToken) else set()
    shown: list[str] = []
    if expected >= _EXPRESSION_START:
        shown.append("an expression")
        expected -= _EXPRESSION_START | {"_NOT", "_UNDEFINED"}
    if expected >= _OPERATORS:
        shown.append("an operator")
        expected -= _OPERATORS
    shown += sorted({_SHOWN.get(name, name) for name in expected})
    found = "the end of the query"
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        value = error.token.value
        found = repr(value if len(value) <= 40 else value[:40] + "...")
    return QueryError(f"at {at}: expected {' or '.join(shown) or 'nothing'}, found {found}")


def _where(token: Token) -> str:
    return f"line {token.line}, column {token.column}"


def _expression(node: Node | Aggregate) -> Node:
    """`node` as an operand: aggregates may only stand alone in SELECT."""
    if isinstance(node, Aggregate):
        raise QueryError(f"{node.name}() at {node.at} is an aggregate: only a whole SELECT item")
    return node


def _canonical(segments: list[str]) -> tuple[str, ...]:
    """The twin's own field names in the twin's spelling; a leading `devices.` dropped."""
    if len(segments) > 1 and segments[0].lower() == "devices":
        segments = segments[1:]
    segments[0] = _TWIN_FIELDS.get(segments[0].lower(), segments[0])
    children = _TWIN_CHILDREN.get(segments[0])
    if children is not None and len(segments) > 1:
        segments[1] = children.get(segments[1].lower(), segments[1])
    return tuple(segments)


def _string(token: Token) -> str:
    body, out, index = token.value[1:-1], [], 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        escape = body[index + 1]  # the lexer never ends a string on a lone backslash
        code = body[index + 2 : index + 6]
        if escape in "'\"\\":
            out.append(escape)
            index += 2
        elif escape == "u" and len(code) == 4 and all(c in "0123456789abcdefABCDEF" for c in code):
            out.append(chr(int(code, 16)))
            index += 6
        else:
            raise QueryError(
                f"string at {_where(token)}: escape \\{escape} is not allowed; "
                "expected \\' \\\" \\\\ or \\uXXXX"
            )
    return "".join(out)


def _number(token: Token) -> int | float:
    text: str = token.value
    value: int | float
    if text[:2].lower() == "0x":
        value = int(text, 16)
    elif any(c in text for c in ".eE") or len(text) > 18:
        value = float(text)
    else:
        value = int(text)
    checked = number(value)
    if not isinstance(checked, int | float):
        raise QueryError(f"number at {_where(token)} is out of range")
    return checked


class _Builder(Transformer[Token, Any]):
    """Builds the syntax tree during the LALR parse, checking what the grammar cannot say."""

    def start(self, children: list[Any]) -> dict[str, Any]:
        parts: dict[str, Any] = {"top": None, "items": None, "where": None, "group_by": None}
        for name, value in children:
            parts[name] = value
        return parts

    def top(self, children: list[Token]) -> tuple[str, int]:
        (token,) = children
        value = _number(token)
        if not isinstance(value, int) or not 0 <= value <= MAX_TOP:
            raise QueryError(f"TOP at {_where(token)}: expected a whole number 0 to {MAX_TOP}")
        return ("top", value)

    def star(self, children: list[Token]) -> tuple[str, None]:
        return ("items", None)

    def items(self, children: list[_Item]) -> tuple[str, tuple[_Item, ...]]:
        named: list[_Item] = []
        for position, item in enumerate(children, start=1):
            name = item.name or f"${position}"
            if any(other.name == name for other in named):
                raise QueryError(f"SELECT names {name!r} twice; give one of them AS another name")
            named.append(_Item(name=name, expression=item.expression))
        return ("items", tuple(named))

    def item(self, children: list[Any]) -> _Item:
        expression = children[0]
        if len(children) > 1:
            alias: Token = children[1]
            name = alias.value[2:-2] if alias.type == "ESCAPED" else alias.value
        elif isinstance(expression, Path):
            name = expression.segments[-1]
        else:
            name = ""  # numbered by `items`
        return _Item(name=name, expression=expression)

    def source(self, children: list[Token]) -> tuple[str, None]:
        names = [token.value.lower() for token in children]
        if names in (["devices", "modules"], ["devices", "jobs"]):
            raise QueryError(
                f"FROM {'.'.join(names)} at {_where(children[0])}: module twin and job queries "
                "are not emulated; only FROM devices is"
            )
        if names != ["devices"]:
            written = ".".join(token.value for token in children)
            raise QueryError(
                f"FROM at {_where(children[0])}: expected devices (device twins), not {written!r}"
            )
        return ("source", None)

    def where(self, children: list[Any]) -> tuple[str, Node]:
        return ("where", _expression(children[0]))

    def group_by(self, children: list[Path]) -> tuple[str, Path]:
        return ("group_by", children[0])

    def or_(self, children: list[Any]) -> Node:
        operands = _merge_equalities([_expression(child) for child in children])
        return operands[0] if len(operands) == 1 else Logic(conjunction=False, operands=operands)

    def and_(self, children: list[Any]) -> Node:
        return Logic(conjunction=True, operands=tuple(map(_expression, children)))

    def not_op(self, children: list[Any]) -> Node:
        return Not(_expression(children[0]))

    def compare(self, children: list[Any]) -> Node:
        left, operator, right = children
        return Compare(operator=operator.value, left=_expression(left), right=_expression(right))

    def in_op(self, children: list[Any]) -> Node:
        return self._member(children, negated=False)

    def nin_op(self, children: list[Any]) -> Node:
        return self._member(children, negated=True)

    @staticmethod
    def _member(children: list[Any], *, negated: bool) -> Node:
        operand, array = children
        keys: set[tuple[str, Any]] = set()
        for item in array.items:
            if not isinstance(item, Const) or kind(item.value) not in PRIMITIVES:
                raise QueryError(
                    f"{'NIN' if negated else 'IN'}: expected a list of constants "
                    "(strings, numbers, true, false, null)"
                )
            keys.add((kind(item.value), item.value))
        return Member(operand=_expression(operand), keys=frozenset(keys), negated=negated)

    def sum(self, children: list[Any]) -> Node:
        return self._arith(children)

    def product(self, children: list[Any]) -> Node:
        return self._arith(children)

    @staticmethod
    def _arith(children: list[Any]) -> Node:
        rest = tuple(
            (operator.value, _expression(operand))
            for operator, operand in zip(children[1::2], children[2::2], strict=True)
        )
        return Arith(first=_expression(children[0]), rest=rest)

    def negate(self, children: list[Any]) -> Node:
        operand = _expression(children[1])
        if isinstance(operand, Const) and kind(operand.value) == "number":
            return Const(-operand.value)
        return Negate(operand)

    def string(self, children: list[Token]) -> Node:
        return Const(_string(children[0]))

    def number(self, children: list[Token]) -> Node:
        return Const(_number(children[0]))

    def true(self, children: list[Token]) -> Node:
        return Const(True)

    def false(self, children: list[Token]) -> Node:
        return Const(False)

    def null(self, children: list[Token]) -> Node:
        return Const(None)

    def undefined(self, children: list[Token]) -> Node:
        return Const(UNDEFINED)

    def array(self, children: list[Any]) -> Node:
        return Array(tuple(map(_expression, children)))

    def call(self, children: list[Any]) -> Node | Aggregate:
        token: Token = children[0]
        args = tuple(map(_expression, children[1:]))
        name = token.value.upper()
        if name in _AGGREGATES:
            _arity(token, args, _AGGREGATES[name])
            return Aggregate(name=name, argument=args[0] if args else None, at=_where(token))
        if name in _FUNCTIONS:
            _arity(token, args, _FUNCTIONS[name])
            return Call(name=name, args=args)
        what = "a message-routing function" if name in _ROUTING_ONLY else "not a function"
        raise QueryError(
            f"{token.value} at {_where(token)} is {what}{_SPELLING.get(name, '')}; {_SUPPORTED}"
        )

    def path(self, children: list[Token]) -> Node:
        segments: list[str] = []
        for token in children:
            if token.type == "ESCAPED":
                segments.append(token.value[2:-2])
            elif token.type == "MEMBER" and token.value.lower() == "group":
                raise QueryError(
                    f"'{token.value}' at {_where(token)} is a keyword in IoT Hub queries; "
                    f"write [[{token.value}]]"
                )
            else:
                segments.append(token.value)
        return Path(_canonical(segments))


def _merge_equalities(operands: list[Node]) -> tuple[Node, ...]:
    """`p = 'a' OR p = 'b' OR ...` as `p IN ['a', 'b', ...]`: the same three-valued result, one
    set lookup per twin instead of one comparison per constant (lists of ids are often long)."""
    merged: list[Node | None] = []
    slots: dict[Path, int] = {}  # where each path's IN goes: where its first equality was
    keys: dict[Path, frozenset[tuple[str, Any]]] = {}
    for operand in operands:
        equality = _equality(operand)
        if equality is None:
            merged.append(operand)
            continue
        path, constants = equality
        if path not in slots:
            slots[path] = len(merged)
            merged.append(None)
        keys[path] = keys.get(path, frozenset()) | constants
    for path, slot in slots.items():
        merged[slot] = Member(operand=path, keys=keys[path], negated=False)
    return tuple(node for node in merged if node is not None)


def _equality(node: Node) -> tuple[Path, frozenset[tuple[str, Any]]] | None:
    """`path = constant`, `constant = path` or `path IN [...]` as the path and its constants."""
    if isinstance(node, Member) and not node.negated and isinstance(node.operand, Path):
        return node.operand, node.keys
    if not isinstance(node, Compare) or node.operator != "=":
        return None
    for path, constant in ((node.left, node.right), (node.right, node.left)):
        if (
            isinstance(path, Path)
            and isinstance(constant, Const)
            and kind(constant.value) in PRIMITIVES
        ):
            return path, frozenset({(kind(constant.value), constant.value)})
    return None


def _arity(token: Token, args: tuple[Node, ...], count: int) -> None:
    if len(args) != count:
        expected = "no arguments" if count == 0 else f"{count} argument{'s' * (count > 1)}"
        raise QueryError(
            f"{token.value.upper()}() at {_where(token)}: expected {expected}, not {len(args)}"
        )
