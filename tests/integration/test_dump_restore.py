"""pg_dump | pg_restore through the proxy leaves an identical database. Large objects are
included on purpose: libpq reads and writes them with FunctionCall ('F') messages."""

from __future__ import annotations

import subprocess

import pytest

from pgsentry.devtools import PgCluster, ProxyProcess

from .helpers import client_env, run_client

pytestmark = pytest.mark.timeout(120)

SCHEMA = r"""
create schema app;
create type app.mood as enum ('ok', 'sad');
create sequence app.seq start 100;
create table app.customers (
    id bigint primary key default nextval('app.seq'),
    name text not null unique,
    mood app.mood,
    created timestamptz default '2024-01-01',
    meta jsonb,
    photo bytea
);
create table app.orders (
    id serial primary key,
    customer_id bigint references app.customers(id) on delete cascade,
    amount numeric(12, 2) check (amount >= 0),
    tags text[]
);
create index orders_customer on app.orders (customer_id);
create view app.totals as
    select c.name, sum(o.amount) as total from app.customers c join app.orders o
    on o.customer_id = c.id group by c.name;
create function app.double(i int) returns int language sql immutable as 'select i * 2';
comment on table app.customers is 'people who order things';
insert into app.customers (name, mood, meta, photo)
    select 'c' || i, (array['ok', 'sad'])[1 + i % 2]::app.mood, jsonb_build_object('i', i),
           decode(md5(i::text), 'hex')
    from generate_series(1, 2000) i;
insert into app.orders (customer_id, amount, tags)
    select 100 + i % 2000, (i % 997) / 7.0, array['t' || i % 5, E'tab\there']
    from generate_series(1, 20000) i;
select lo_from_bytea(0, convert_to(repeat('large object payload ', 50000), 'UTF8'));
select lo_from_bytea(0, '\x00010203'::bytea);
"""


def _plain_dump(pg: PgCluster, dbname: str) -> str:
    """A plain-text dump taken directly from the server (not through the proxy)."""
    out = run_client(
        pg, "pg_dump", ["-h", pg.host, "-p", str(pg.port), "-U", "postgres", "--no-sync", dbname]
    ).stdout.decode()
    # pg_dump >= 15.14 writes a random \restrict key into every dump; it is not content.
    return "\n".join(
        line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def test_pg_dump_pipe_pg_restore_round_trip(pg: PgCluster, proxy: ProxyProcess) -> None:
    pg.psql("drop database if exists dump_src")
    pg.psql("drop database if exists dump_dst")
    pg.psql("create database dump_src")
    pg.psql("create database dump_dst")
    pg.psql(SCHEMA, dbname="dump_src")

    env = client_env(PGCONNECT_TIMEOUT="15")
    via_proxy = ["-h", proxy.host, "-p", str(proxy.port), "-U", "postgres"]
    dump = subprocess.Popen(
        [str(pg.bindir / "pg_dump"), *via_proxy, "-Fc", "dump_src"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    restore = subprocess.run(
        [str(pg.bindir / "pg_restore"), *via_proxy, "--exit-on-error", "-d", "dump_dst"],
        stdin=dump.stdout,
        capture_output=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert dump.stdout is not None
    dump.stdout.close()
    dump_err = dump.stderr.read().decode() if dump.stderr else ""
    assert dump.wait(30) == 0, dump_err
    assert restore.returncode == 0, restore.stderr.decode()

    source, restored = _plain_dump(pg, "dump_src"), _plain_dump(pg, "dump_dst")
    assert "large object payload" not in source  # blobs are dumped as hex, sanity-check content:
    assert "lo_open" in source and "app.customers" in source
    assert restored == source

    # And a plain dump taken through the proxy equals the one taken directly.
    proxied = run_client(pg, "pg_dump", [*via_proxy, "--no-sync", "dump_src"]).stdout.decode()
    proxied = "\n".join(
        line for line in proxied.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    )
    assert proxied == source
    pg.psql("drop database dump_src")
    pg.psql("drop database dump_dst")
