"""The lexical shape key: a never-seen text's constants replaced by ``?``, without parsing.

Owns `lexical_key(text) -> str | None` (the analyzer's fast path, rule 3 in analyzer.py).
It is None for a text outside the lexical alphabet: ASCII letters, digits, space, tab,
CR, LF and ``_ , . ( ) = < > * + - ; '``, or one containing ``--``. In that alphabet
there are no comments, quoted identifiers, dollar quotes, escapes, operators that could
start a comment or parameter markers, so the constants are exactly what the regular
expression `_CONSTANT` finds: closed '...' strings and numbers at word boundaries. Two
constants side by side make the key ambiguous (``'it''s'`` is one string to PostgreSQL,
``1'a'`` a syntax error, both would be ``??``), so a text whose key has ``??`` (``?`` is not
in the alphabet) has no key either and takes the parser.

The native version (`_lexical.c`, built when a C compiler is there) and the regular
expressions here give the same result for every text (a hypothesis test checks it);
`lexical_key` is whichever is available. The native one makes one pass where the Python
twin runs two regular expressions (about 1 µs per pgbench statement).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_LEXICAL_TEXT = re.compile(r"[A-Za-z0-9_ \t\n\r,.()=<>*+\-;']*", re.ASCII).fullmatch
_CONSTANT = re.compile(r"'[^']*'|\b[0-9]+(?:\.[0-9]+)?\b", re.ASCII)


def py_lexical_key(text: str) -> str | None:
    """Pure-Python twin of the native lexical_key (used when it could not be built)."""
    if "--" in text or not _LEXICAL_TEXT(text):
        return None
    key = _CONSTANT.sub("?", text)
    return None if "??" in key else key


lexical_key: Callable[[str], str | None]
try:
    from pgsentry.analysis._lexical import lexical_key as _native
except ImportError:  # pragma: no cover - no C compiler when the package was installed
    lexical_key = py_lexical_key
    NATIVE = False
else:
    lexical_key = _native
    NATIVE = True
