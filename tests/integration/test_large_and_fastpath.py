"""Very large rows and messages (a 50 MB bytea each way, text and binary), and the
FunctionCall message: raw 'F' for int4pl, and libpq's large-object API via psql."""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path

import asyncpg
import psycopg
import pytest

from pgsentry.devtools import PgCluster, ProxyProcess

from . import rawpg
from .helpers import proxy_conninfo, run_client
from .rawpg import RawConn

pytestmark = pytest.mark.timeout(120)

BIG = 50 * 1024 * 1024


def test_50mb_bytea_both_ways_psycopg(pg: PgCluster, proxy: ProxyProcess) -> None:
    blob = os.urandom(BIG)
    digest = hashlib.md5(blob).hexdigest()
    pg.psql("drop table if exists big_row; create table big_row(id int, b bytea)")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("insert into big_row values (1, %b)", [blob])
        assert pg.psql("select md5(b) from big_row where id = 1").strip() == digest
        (text_back,) = conn.cursor().execute("select b from big_row").fetchone() or (None,)
        assert text_back is not None and hashlib.md5(text_back).hexdigest() == digest
        (binary_back,) = conn.cursor(binary=True).execute("select b from big_row").fetchone() or (
            None,
        )
        assert binary_back is not None and hashlib.md5(binary_back).hexdigest() == digest
    pg.psql("drop table big_row")


async def test_50mb_text_value_asyncpg(proxy: ProxyProcess) -> None:
    conn = await asyncpg.connect(proxy.dsn(), timeout=15)
    try:
        value = "ab" * (BIG // 2)
        back = await conn.fetchval("select $1::text || 'z'", value)
        assert len(back) == BIG + 1 and back.endswith("abz")
    finally:
        await conn.close()


def test_functioncall_int4pl_raw(proxy: ProxyProcess) -> None:
    with RawConn(proxy.host, proxy.port) as conn:
        conn.login()
        conn.send(rawpg.query("select 'int4pl'::regproc::oid"))
        rows = [m for m in conn.read_until([b"Z"]) if m.kind == b"D"]
        oid = int(rows[0].payload[6:])
        conn.send(rawpg.function_call(oid, [struct.pack("!i", 2), struct.pack("!i", 40)]))
        msgs = conn.read_until([b"Z"])
        assert [m.kind for m in msgs] == [b"V", b"Z"]
        assert msgs[0].payload == struct.pack("!ii", 4, 42)

        conn.send(rawpg.function_call(oid, [b"5", b"6"], arg_format=0, result_format=0))
        msgs = conn.read_until([b"Z"])
        assert msgs[0].kind == b"V" and msgs[0].payload == struct.pack("!i", 2) + b"11"

        conn.send(rawpg.function_call(1, []))  # no such function: an error, then ready again
        msgs = conn.read_until([b"Z"])
        assert [m.kind for m in msgs] == [b"E", b"Z"]
        assert msgs[0].sqlstate == "42883"


def test_large_objects_via_psql_lo_import_export(
    pg: PgCluster, proxy: ProxyProcess, tmp_path: Path
) -> None:
    source, target = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    conninfo = proxy_conninfo(proxy, sslmode="disable")
    out = run_client(pg, "psql", ["-X", "-d", conninfo, "-c", rf"\lo_import {source}"])
    match = re.search(rb"lo_import (\d+)", out.stdout)
    assert match, out.stdout
    oid = match.group(1).decode()
    run_client(pg, "psql", ["-X", "-d", conninfo, "-c", rf"\lo_export {oid} {target}"])
    assert target.read_bytes() == source.read_bytes()
    run_client(pg, "psql", ["-X", "-d", conninfo, "-c", rf"\lo_unlink {oid}"])
