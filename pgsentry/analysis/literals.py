"""Checks that depend on how the session's scanner reads string literals.

Owns `check_text`: refuses text that PostgreSQL would read differently from pglast
(embedded NUL; backslashes in plain '...' literals or U&'...' literals while
standard_conforming_strings is off), and `off_reading`: for text whose setting at run time
is not known (a code body, a pipelined statement), the same text rewritten so that pglast,
which always reads with the setting on, reads it as the server would with it off. Uses
pglast's scanner, never regular expressions. Must not parse statements or know about policy.
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


def off_reading(sql: str) -> str | None:
    """`sql` as the server reads it with standard_conforming_strings off, spelled for pglast.

    None when both settings read it alike (no plain '...' literal holds a backslash).
    Otherwise every plain literal that holds one gets an E prefix: with the setting off
    the server reads it as an escape string, so the rewritten text is parsed to what the
    server would run. A literal whose end moves (an odd run of backslashes before a
    quote) or a U&'...' literal would be split into other tokens: `Refused`.
    """
    if "\\" not in sql:
        return None
    data = sql.encode("utf-8")
    try:
        tokens = parser.scan(sql)
    except Exception as exc:
        raise Refused(f"cannot scan statement text: {exc}") from None
    starts: list[int] = []
    for tok in tokens:
        literal = data[tok.start : tok.end + 1]
        if tok.name == "USCONST" and b"\\" in literal:
            raise Refused(
                "U&'...' literal that standard_conforming_strings off would read "
                "differently; refused"
            )
        if tok.name != "SCONST" or literal[:1] != b"'" or b"\\" not in literal:
            continue
        if _escapes_a_quote(literal):
            raise Refused(
                "a string literal ends elsewhere when standard_conforming_strings is off "
                "(a backslash before a quote), and the setting in force when it runs is "
                "not known; refused"
            )
        starts.append(tok.start)
    if not starts:
        return None
    out: list[bytes] = []
    last = 0
    for start in starts:
        out.append(data[last:start])
        out.append(b" E")
        last = start
    out.append(data[last:])
    return b"".join(out).decode("utf-8")


def _escapes_a_quote(literal: bytes) -> bool:
    """True if an odd run of backslashes stands before a quote (the closing one too)."""
    run = 0
    for byte in literal[1:]:
        if byte == 0x5C:
            run += 1
            continue
        if byte == 0x27 and run % 2:
            return True
        run = 0
    return False
