"""IoT Hub's device query language, as `POST /devices/query` runs it. Pure.

`parse(text)` turns a query into a `Query` or raises `QueryError` naming the line, column and
what was expected there (`syntax`); `Query.page(ids, load, cursor, size)` runs it over the hub's
twins and returns one page and the continuation token of the next; `page_size` and
`decode_cursor` read the paging headers (`run`). Values and the syntax tree: `tree`. Facts and
their sources: docs/protocol/hub-service-rest.md §11.

The language (IoT Hub's "query language for device and module twins"):

    SELECT [TOP n] * | item [AS alias], ...   FROM devices   [WHERE condition]   [GROUP BY path]

- items: paths (`deviceId`, `tags.location.region`, `properties.reported.$version`; a leading
  `devices.` is the collection's own name; `[[name]]` escapes a segment such as `[[group]]`),
  expressions, and the aggregates COUNT(), SUM(x), AVG(x), MIN(x), MAX(x);
- conditions: AND, OR, NOT; = != <> < > <= >=; IN / NIN with an array of constants; + - * / %;
  constants 'text' "text" 12 1.5e3 0x1F true false null undefined [..];
- functions: IS_DEFINED (the one Microsoft documents for twin queries), STARTSWITH, ENDSWITH and
  ARRAY_CONTAINS (what Microsoft's own tools send to IoT Hub in twin queries). The message-routing
  functions (IS_NULL, IS_STRING, CONTAINS, LOWER, ...) are refused by name.

It does NOT do `FROM devices.modules` or `devices.jobs` (refused with a message saying so),
ORDER BY, joins, or any I/O: the caller hands in the twins.

Errors:

    QueryError      a field of the request (`query`, `x-ms-max-item-count`, `x-ms-continuation`)
                    and what is wrong with it; the API answers 400 ArgumentInvalid
"""

from __future__ import annotations

from emulator.service.query.run import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Cursor,
    Page,
    Query,
    decode_cursor,
    page_size,
)
from emulator.service.query.syntax import MAX_NESTING, MAX_QUERY_LENGTH, parse
from emulator.service.query.tree import UNDEFINED, QueryError

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_NESTING",
    "MAX_PAGE_SIZE",
    "MAX_QUERY_LENGTH",
    "UNDEFINED",
    "Cursor",
    "Page",
    "Query",
    "QueryError",
    "decode_cursor",
    "page_size",
    "parse",
]
