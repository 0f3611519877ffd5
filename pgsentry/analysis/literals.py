"""Checks that depend on how the session's scanner reads string literals.

Owns `check_text`: refuses text that PostgreSQL would read differently from pglast
(embedded NUL; backslashes in plain '...' literals or U&'...' literals while
standard_conforming_strings is off). Uses pglast's scanner, never regular expressions.
Must not parse statements or know about policy.
"""

from __future__ import annotations

from pglast import parser


class Refused(Exception):
    """The text cannot be analysed safely; the message says why."""


def check_text(sql: str, standard_conforming_strings: bool) -> None:
    """Raise `Refused` when the text would not be read by the server as pglast reads it."""
    if "\x00" in sql:
        raise Refused("statement text contains a NUL byte")
    if standard_conforming_strings or "\\" not in sql:
        return
    data = sql.encode("utf-8")
    try:
        tokens = parser.scan(sql)
    except Exception as exc:  # unterminated literal etc.: the parser will report it too
        raise Refused(f"cannot scan statement text: {exc}") from None
    for tok in tokens:
        if tok.name == "USCONST":
            raise Refused(
                "U&'...' literal while standard_conforming_strings is off: the server "
                "rejects or reads it differently; refused"
            )
        if tok.name != "SCONST":
            continue
        literal = data[tok.start : tok.end + 1]
        if literal[:1] == b"'" and b"\\" in literal:
            raise Refused(
                "a plain '...' string literal contains a backslash while "
                "standard_conforming_strings is off: the server would read it differently "
                "than pgsentry; refused (use E'...' or turn standard_conforming_strings on)"
            )
