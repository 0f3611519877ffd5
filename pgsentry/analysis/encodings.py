"""Which client encodings pgsentry can read a statement in.

Owns `safe_client_encoding(name)` and `unsafe_client_encoding_value(args)`. The server
converts a Query's bytes from client_encoding before it parses them; pgsentry reads them as
UTF-8. In every encoding PostgreSQL accepts as a server encoding a byte below 0x80 is that
ASCII character, so quotes, backslashes and semicolons are where pgsentry sees them. The
client-only encodings (SJIS, BIG5, GBK, UHC, GB18030, JOHAB, and their aliases) are not:
there the second byte of a character may be a backslash or other ASCII, so a statement
pgsentry reads as one harmless string can be two statements to the server. Names follow
PostgreSQL's own matching (case and punctuation ignored). Pure data and folding; no I/O.
"""

from __future__ import annotations

from typing import Any

_SAFE = frozenset(
    {
        "utf8", "unicode", "sqlascii", "muleinternal",
        "euccn", "eucjp", "eucjis2004", "euckr", "euctw",
        "koi8", "koi8r", "koi8u", "alt", "abc", "win", "tcvn", "tcvn5712", "vscii",
        *(f"latin{n}" for n in range(1, 11)),
        *(f"iso8859{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)),
        *(f"win{n}" for n in (866, 874, *range(1250, 1259))),
        *(f"windows{n}" for n in (866, 874, *range(1250, 1259))),
    }
)  # fmt: skip


def safe_client_encoding(name: str) -> bool:
    """True for an encoding whose bytes below 0x80 are always ASCII (see module)."""
    return "".join(ch for ch in name.lower() if ch.isalnum()) in _SAFE


def unsafe_client_encoding_value(value: Any) -> bool:
    """True unless `value` (a folded constant) names a safe encoding."""
    return not (isinstance(value, str) and safe_client_encoding(value))
