"""Request bodies decoded strictly: standard JSON in valid UTF-8, bounded in size and depth.

Python's ``json`` is lenient where a webhook must not be. It accepts ``NaN`` and ``Infinity`` and
turns ``1e400`` into infinity (echoed by a policy, the answer is no longer JSON); it decodes bytes
with ``surrogatepass``, so the raw bytes ``ED A0 80`` become a lone surrogate, as does the escape
``"\\ud800"`` (later a ``UnicodeEncodeError`` in the hash, the payload summary or the Tables SDK); and
it nests until ``RecursionError``. ``decode`` refuses all of these before any other work, with a
``RequestError`` naming the field:

    size       at most ``max_bytes`` bytes (checked before anything is parsed)
    text       UTF-8 without invalid bytes; no lone surrogate in any string or key
    numbers    finite: no NaN, Infinity, or a literal that overflows a double
    depth      at most ``max_depth`` nested arrays and objects

Pure: no I/O. Messages name the field by its path (``deviceRuntimeContext.payload.a[2]``) and
never quote a value.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from allocation.errors import RequestError

MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = 32

# A surrogate can only come from a \uD800-\uDFFF escape once the bytes are strict UTF-8; bodies
# without one (nearly all) skip the per-string check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class _NonFinite(float):
    """A number the body spelt as NaN, Infinity or a literal too large for a double."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> _NonFinite:
        made = super().__new__(cls, math.nan)
        made.text = text
        return made


def _parse_float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def decode(
    body: bytes, *, field: str = "body", max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH
) -> Any:
    """The JSON value of ``body``, or a ``RequestError`` naming what is not standard or too big."""
    if not body:
        raise RequestError(field, "a JSON document, got an empty body")
    if len(body) > max_bytes:
        raise RequestError(field, f"at most {max_bytes} bytes, got {len(body)}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(
            field, f"UTF-8 text, got an invalid byte at offset {error.start}"
        ) from None
    try:
        document = json.loads(text, parse_float=_parse_float, parse_constant=_NonFinite)
    except RecursionError:
        raise RequestError(field, f"at most {max_depth} levels of nesting") from None
    except ValueError:
        raise RequestError(field, "a JSON document, got text that is not JSON") from None
    _check(document, field, max_depth, check_text=_SURROGATE_ESCAPE.search(text) is not None)
    return document


def _check(document: Any, field: str, max_depth: int, *, check_text: bool) -> None:
    """Walk containers (iteratively) for depth, non-finite numbers and lone surrogates."""
    if isinstance(document, _NonFinite):
        raise RequestError(field, f"a finite JSON number, got {document.text}")
    if check_text and isinstance(document, str) and not _is_text(document):
        raise RequestError(field, "valid Unicode text, got a lone surrogate")
    if type(document) is not dict and type(document) is not list:
        return
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(document, 1, ())]
    while stack:
        container, depth, path = stack.pop()
        if depth > max_depth:
            raise RequestError(_path(field, path), f"at most {max_depth} levels of nesting")
        items = container.items() if type(container) is dict else enumerate(container)
        for key, child in items:
            if check_text and type(key) is str and not _is_text(key):
                raise RequestError(
                    _path(field, path), "valid Unicode text in every key, got a lone surrogate"
                )
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1, (*path, key)))
            elif kind is str:
                if check_text and not _is_text(child):
                    raise RequestError(
                        _path(field, (*path, key)), "valid Unicode text, got a lone surrogate"
                    )
            elif kind is _NonFinite:
                raise RequestError(
                    _path(field, (*path, key)), f"a finite JSON number, got {child.text}"
                )


def _is_text(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _path(field: str, path: tuple[str | int, ...]) -> str:
    """``body`` and (``deviceRuntimeContext``, ``payload``, 2) -> ``deviceRuntimeContext.payload[2]``."""
    named = bool(path) and isinstance(path[0], str) and _IDENTIFIER.fullmatch(path[0]) is not None
    text = "" if field == "body" and named else field
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif _IDENTIFIER.fullmatch(step):
            text += f".{step}" if text else step
        else:
            text += f"[{json.dumps(step[:32])}]"
    return text
