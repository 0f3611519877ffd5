"""COPY through the proxy: ~100 MB FROM STDIN and ~100 MB TO STDOUT with checksums compared
against what the server holds (checked directly, not through the proxy); CopyFail recovers."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import psycopg
import pytest

from pgsentry.devtools import PgCluster, ProxyProcess

pytestmark = pytest.mark.timeout(180)

ROWS = 100_000
PAYLOAD_HEX_CHARS = 1_000  # ~1 KB per row, ~100 MB in all


def copy_chunks(rows: int = ROWS, per_chunk: int = 1_000) -> Iterator[bytes]:
    """Deterministic COPY text data: 'id<TAB>hex\\n' lines, in ~1 MB chunks."""
    rng = random.Random(20240601)
    for start in range(0, rows, per_chunk):
        yield b"".join(
            b"%d\t%s\n" % (i, rng.randbytes(PAYLOAD_HEX_CHARS // 2).hex().encode())
            for i in range(start, min(rows, start + per_chunk))
        )


def test_copy_100mb_in_and_out(pg: PgCluster, proxy: ProxyProcess) -> None:
    pg.psql("drop table if exists copy_big; create unlogged table copy_big(id int, payload text)")
    sent = hashlib.md5()
    sent_bytes = 0
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with conn.cursor().copy("copy copy_big (id, payload) from stdin") as copy:
            for chunk in copy_chunks():
                sent.update(chunk)
                sent_bytes += len(chunk)
                copy.write(chunk)
        assert sent_bytes > 100_000_000

        # What arrived, checked on the server directly (independent of the proxy's out path).
        stored = pg.psql(
            "select count(*) || ' ' || md5(string_agg(id || E'\\t' || payload || E'\\n', '' "
            "order by id)) from copy_big"
        ).strip()
        assert stored == f"{ROWS} {sent.hexdigest()}"

        received = hashlib.md5()
        received_bytes = 0
        with conn.cursor().copy(
            "copy (select id, payload from copy_big order by id) to stdout"
        ) as copy:
            for block in copy:
                received.update(block)
                received_bytes += len(block)
        assert received_bytes == sent_bytes
        assert received.hexdigest() == sent.hexdigest()
    pg.psql("drop table copy_big")


def test_copy_binary_format_round_trip(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("create temp table cb(i int, b bytea, t text)")
        rows = [(i, bytes([i % 256]) * (i % 50), f"t{i}") for i in range(5000)]
        with conn.cursor().copy("copy cb from stdin (format binary)") as copy:
            copy.set_types(["int4", "bytea", "text"])
            for row in rows:
                copy.write_row(row)
        with conn.cursor().copy(
            "copy (select * from cb order by i) to stdout (format binary)"
        ) as copy:
            copy.set_types(["int4", "bytea", "text"])
            assert list(copy.rows()) == rows


class AbortCopy(Exception):
    pass


def test_copy_fail_from_client_keeps_session_usable(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("create temp table cf(i int)")
        with pytest.raises(AbortCopy), conn.cursor().copy("copy cf from stdin") as copy:
            copy.write(b"1\n2\n")
            raise AbortCopy  # psycopg sends CopyFail and the server answers 57014
        assert conn.execute("select count(*) from cf").fetchone() == (0,)


def test_copy_bad_data_error_reaches_client(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("create temp table cbad(i int)")
        with (
            pytest.raises(psycopg.errors.InvalidTextRepresentation),
            conn.cursor().copy("copy cbad from stdin") as copy,
        ):
            copy.write(b"1\nnot-a-number\n")
        assert conn.execute("select 'ok'").fetchone() == ("ok",)
