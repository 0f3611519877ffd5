"""Audit record encoding: one record -> one JSON line (bytes, with the newline).

Owns: the timestamp format, the generic encoder every event uses (`serialize`) and the
pre-serialized fragments of the per-statement hot path (`members`, `statement_line`).
Must not: do I/O or import anything else from pgsentry.

The hot path: a "statement" record is mostly made of parts that repeat (the session, the
protocol, the decision and facts of a statement shape). Their JSON is built once with
`members()` and kept by the session; per statement only the text, the timings and the
outcome are encoded, with one bytes formatting operation. The result is byte for byte what
`serialize` gives for the same fields in the same order (a test checks this).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import logging
import time
from typing import Any

import orjson

log = logging.getLogger(__name__)

_ts_cache: tuple[int, bytes] = (-1, b"")


def format_ts_bytes(ts: float) -> bytes:
    """RFC 3339 UTC with microseconds, e.g. ``2024-05-01T12:00:00.123456Z`` (``time.time()`` in)."""
    global _ts_cache
    micros = round(ts * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    cached_seconds, prefix = _ts_cache
    if seconds != cached_seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds)).encode()
        _ts_cache = (seconds, prefix)
    return b"%s%06dZ" % (prefix, fraction)


def format_ts(ts: float) -> str:
    """`format_ts_bytes` as text."""
    return format_ts_bytes(ts).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json")
    return str(value)


# orjson encodes a record several times faster than the stdlib; records it refuses (lone
# surrogates from undecodable SQL text, exotic values) go through the stdlib encoder.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS

_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_json_default, check_circular=True
).encode


def serialize(ts: float, event: str, fields: dict[str, object]) -> bytes:
    """One record as one JSON line (with the newline); never raises on odd field values."""
    stamp = format_ts(ts)
    record: dict[str, object] = {"ts": stamp, "event": event, **fields}
    if "ts" in fields or "event" in fields:
        record["ts"] = stamp
        record["event"] = event
    try:
        # + b"\n" also copies the line out of orjson's 4 KiB output buffer, which the
        # queue would otherwise keep until the writer runs (idle-connection memory).
        return orjson.dumps(record, default=_json_default, option=_ORJSON_OPTIONS) + b"\n"
    except Exception:
        pass
    try:
        text = _encode(record)
    except Exception as exc:  # a field's own __str__/model_dump may raise anything
        text = _encode({"ts": stamp, "event": event, "unserializable": repr(fields)[:10_000]})
        log.error("audit record for %s was not serializable: %s", event, exc)
    # Lone surrogates (SQL text decoded with surrogateescape) become valid \\udcXX JSON escapes.
    return text.encode("utf-8", "backslashreplace") + b"\n"


def json_value(value: object) -> bytes:
    """One JSON value; never raises (the same conversions and fallbacks as `serialize`)."""
    try:
        return orjson.dumps(value, default=_json_default)
    except Exception:
        pass
    try:
        text = _encode(value)
    except Exception:
        text = _encode(repr(value)[:10_000])
    return text.encode("utf-8", "backslashreplace")


def members(**fields: object) -> bytes:
    """JSON object members without the braces (``"a":1,"b":null``), to splice into a line."""
    return b",".join(json_value(k) + b":" + json_value(v) for k, v in fields.items())


_STATEMENT = (
    b'{"ts":"%s%06dZ","event":"statement",%s%s,"text":%s,"started_at":%d.%06d,"duration_ms":%d.%03d,'
    b'"command_tag":%s,"rows":%s,"sqlstate":%s%s}\n'
)
_small: dict[str | None, bytes] = {None: b"null"}  # command tags and SQLSTATEs repeat


def _small_json(value: str | None) -> bytes:
    out = _small.get(value)
    if out is None:
        out = json_value(value)
        if len(_small) < 4096:
            _small[value] = out
    return out


def statement_line(
    started_at: float,
    duration: float,
    head: bytes,
    protocol: bytes,
    text: str,
    command_tag: str | None,
    rows: int | None,
    sqlstate: str | None,
    tail: bytes,
) -> bytes:
    """A "statement" record, stamped `started_at` + `duration` (seconds).

    `head` and `protocol` hold the members before ``text`` (``"session_id":..`` and
    ``,"protocol":..``); `tail` the members after ``sqlstate``, each preceded by a comma.
    ``started_at`` (Unix seconds) and ``duration_ms`` have microsecond precision, like ``ts``.
    (Formatted by hand: float repr and round(x, 3) cost more here than everything else.)
    """
    seconds, fraction = divmod(round((started_at + duration) * 1_000_000), 1_000_000)
    cached_seconds, prefix = _ts_cache
    if seconds != cached_seconds:
        prefix = format_ts_bytes(seconds)[:-7]
    try:
        text_json = orjson.dumps(text)
    except TypeError:  # lone surrogates: the stdlib's encoding, as in serialize()
        text_json = json_value(text)
    micros = round(duration * 1_000_000)
    started_s, started_us = divmod(round(started_at * 1_000_000), 1_000_000)
    return _STATEMENT % (
        prefix,
        fraction,
        head,
        protocol,
        text_json,
        started_s,
        started_us,
        micros // 1000,
        micros % 1000,
        _small_json(command_tag),
        b"null" if rows is None else b"%d" % rows,
        _small_json(sqlstate),
        tail,
    )
