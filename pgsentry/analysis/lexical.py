"""The lexical shape key: a never-seen text's constants replaced by ``?``, without parsing.

Owns `lexical_key(text) -> str | None` (the analyzer's fast path, rule 3 in analyzer.py).
The text is read as tokens the way PostgreSQL's scanner reads them:

- ``'...'``: a string whose characters are all in the alphabet below (so no quote of either
  kind and no backslash): replaced by ``?``;
- ``"..."``: a quoted identifier of printable ASCII without ``'``: kept as it is (ORMs quote
  every name);
- a run of digits with an optional ``.digits`` fraction, starting and ending at a word
  boundary: replaced by ``?``;
- any other character of the alphabet: ASCII letters, digits, space, tab, CR, LF and
  ``_ , . ( ) = < > * + - ;``: kept as it is.

Anything else gives None: another character outside quoted identifiers (so no comments,
dollar quotes, escapes, operators that could start a comment, parameter markers or
non-ASCII), a quote that is not closed, ``--`` anywhere, or two constants side by side
(``'it''s'`` is one string to PostgreSQL, ``1'a'`` a syntax error; both would be ``??``, and
``?`` is not in the alphabet, so ``??`` in a key can only mean that). Every quote in an
accepted text therefore opens a token PostgreSQL reads the same way, and two texts with the
same key differ in constants only.

The native version (`_lexical.c`, built when a C compiler is there) and the regular
expressions here give the same result for every text (a hypothesis test checks it);
`lexical_key` is whichever is available. The native one makes one pass where the Python
twin runs two regular expressions (about 1 µs per pgbench statement).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pgsentry import native

_ALPHABET = r"A-Za-z0-9_ \t\n\r,.()=<>*+\-;"
# The whole text as tokens, each taken greedily and never given back (atomic group,
# possessive repeat), as the C version reads it.
_TOKENS = re.compile(rf"""(?>'[{_ALPHABET}]*'|"[ !#-&(-~]*"|[{_ALPHABET}])*+""", re.ASCII)
_CONSTANT = re.compile(r"""'[^']*'|"[^"]*"|\b[0-9]+(?:\.[0-9]+)?\b""", re.ASCII)


def _replace(match: re.Match[str]) -> str:
    token = match[0]
    return token if token[0] == '"' else "?"


def py_lexical_key(text: str) -> str | None:
    """Pure-Python twin of the native lexical_key (used when it could not be built)."""
    if "--" in text or not text.isascii() or not _TOKENS.fullmatch(text):
        return None
    key = _CONSTANT.sub(_replace, text)
    return None if "??" in key else key


_native = native.load("pgsentry.analysis._lexical")
lexical_key: Callable[[str], str | None] = (
    py_lexical_key if _native is None else _native.lexical_key
)
NATIVE = _native is not None
