"""libpg_query's parse trees as plain Python values.

Owns `sql_tree` and `plpgsql_tree`: pglast's JSON output read with orjson (about half the
instructions of the stdlib `json`; every integer libpg_query writes fits in 64 bits, so
none is read as a float). A tree nested deeper than orjson's limit raises RecursionError,
as a walk of it would. Must not interpret the trees.
"""

from __future__ import annotations

from typing import Any

import orjson
from pglast import parser


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise RecursionError("parse tree nested too deeply") from None
        raise


def sql_tree(sql: str) -> dict[str, Any]:
    """`parse_sql_json(sql)` as dicts; raises pglast.parser.ParseError."""
    tree: dict[str, Any] = _loads(parser.parse_sql_json(sql))
    return tree


def plpgsql_tree(json_text: str) -> Any:
    """The value of `parse_plpgsql_json`'s output."""
    return _loads(json_text)
