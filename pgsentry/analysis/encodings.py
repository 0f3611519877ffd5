"""Which client encodings pgsentry can read a statement in.

Owns `safe_client_encoding(name)`, `unsafe_client_encoding_value(value)` and
`python_codec(name)`, the codec a safe encoding's text is read with. The server
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


_LATIN = {1: 1, 2: 2, 3: 3, 4: 4, 5: 9, 6: 10, 7: 13, 8: 14, 9: 15, 10: 16}  # latinN -> ISO 8859
_CODECS = {
    **{f"latin{n}": f"iso8859_{iso}" for n, iso in _LATIN.items()},
    **{f"iso8859{n}": f"iso8859_{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)},
    **{f"{p}{n}": f"cp{n}" for p in ("win", "windows") for n in (866, 874, *range(1250, 1259))},
    "win": "cp1251", "alt": "cp866", "abc": "cp1258", "tcvn": "cp1258", "tcvn5712": "cp1258",
    "koi8": "koi8_r", "koi8r": "koi8_r", "koi8u": "koi8_u",
    "eucjp": "euc_jp", "eucjis2004": "euc_jis_2004", "euckr": "euc_kr", "euccn": "gb2312",
}  # fmt: skip


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def safe_client_encoding(name: str) -> bool:
    """True for an encoding whose bytes below 0x80 are always ASCII (see module)."""
    return _normal(name) in _SAFE


def python_codec(name: str) -> str | None:
    """The codec that reads text sent in safe encoding `name` as the server does; None
    for UTF8 and SQL_ASCII (read as UTF-8). A safe encoding Python has no codec for is
    read as Latin-1: its ASCII bytes, so every quote and separator, stay where they are."""
    normal = _normal(name)
    if normal in ("utf8", "unicode", "sqlascii"):
        return None
    return _CODECS.get(normal, "latin_1")


def unsafe_client_encoding_value(value: Any) -> bool:
    """True unless `value` (a folded constant) names a safe encoding."""
    return not (isinstance(value, str) and safe_client_encoding(value))
