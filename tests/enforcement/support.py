"""Helpers for the enforcement tests: the fixture schema, its snapshot, the corpora, clients.

Owns: creating the fixture database DIRECTLY on the cluster (never through the proxy),
taking a snapshot of everything a dangerous statement could destroy (tables, their rows,
catalog objects, ALTER SYSTEM settings, databases), resetting the schema, loading the
statement corpora, and running one SQL text through the proxy with a chosen client and
protocol. Must not talk to the proxy other than as an ordinary client would, nor judge
statements itself (the proxy's answer is what is checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pglast
import psycopg
import yaml
from integration import rawpg

from pgsentry.devtools import PgCluster, ProxyProcess

REPO = Path(__file__).resolve().parents[2]
SHIPPED_POLICIES = REPO / "policies"
CORPUS = REPO / "tests" / "corpus"

FIXTURE_DB = "enforce"
VICTIM_DB = "prod"  # exists so that a DROP DATABASE prod that slipped through would show

# accounts(id int primary key, owner text, balance int), orders(id int, account_id int,
# total int), app.users(id int, name text): the schema both corpora assume. Plus the objects
# the dangerous corpus names (a view, a sequence, a trigger function, a trigger) so that a
# drop that slipped through changes the snapshot. Nothing depends on the tables (the view
# reads no table): a DROP TABLE that slipped through must succeed, not fail on a dependency.
SCHEMA_SQL = """
DROP SCHEMA IF EXISTS app CASCADE;
DROP SCHEMA IF EXISTS reporting CASCADE;
DROP SCHEMA IF EXISTS public CASCADE;
CREATE SCHEMA public;
CREATE EXTENSION IF NOT EXISTS plpgsql;
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance int);
CREATE TABLE orders (id int, account_id int, total int);
CREATE SCHEMA app;
CREATE TABLE app.users (id int, name text);
CREATE SEQUENCE app.user_ids;
SELECT setval('app.user_ids', 42);
CREATE VIEW app.user_names AS SELECT 'x'::text AS name;  -- must not protect app.users
CREATE FUNCTION app.audit() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER audit BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION app.audit();
CREATE TRIGGER audit BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION app.audit();
INSERT INTO accounts
  SELECT i, (ARRAY['alice', 'bob', 'carol', 'dave'])[1 + i % 4] || CASE WHEN i > 4
         THEN i::text ELSE '' END, i * 100
  FROM generate_series(1, 60) i;
INSERT INTO accounts VALUES (101, 'alice', 5000), (102, 'bob', 20);
INSERT INTO orders SELECT i, 1 + i % 60, i % 17 FROM generate_series(1, 200) i;
INSERT INTO app.users VALUES (1, 'carol'), (2, 'dave'), (3, 'erin');
"""

FIXTURE_TABLES = ("public.accounts", "public.orders", "app.users")

_CATALOG_SQL = """
SELECT 'rel ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text
       || ' rls=' || c.relrowsecurity
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'app')
UNION ALL
SELECT 'col ' || c.oid::regclass::text || '.' || a.attname || ' ' || a.atttypid::regtype::text
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'app') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'trigger ' || t.tgrelid::regclass::text || '.' || t.tgname || ' ' || t.tgenabled::text
FROM pg_trigger t WHERE NOT t.tgisinternal
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname IN ('public', 'app')
UNION ALL
SELECT 'rule ' || r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'app') AND r.rulename <> '_RETURN'
UNION ALL
SELECT 'extension ' || extname FROM pg_extension
UNION ALL
SELECT 'sequence ' || last_value::text FROM app.user_ids
UNION ALL
SELECT 'database ' || datname FROM pg_database
UNION ALL
SELECT 'auto.conf ' || name || '=' || setting FROM pg_file_settings
WHERE sourcefile LIKE '%postgresql.auto.conf'
"""


def fixture_dsn(pg: PgCluster) -> str:
    return pg.dsn(dbname=FIXTURE_DB)


def create_fixture_database(pg: PgCluster) -> None:
    """(Re)create the fixture database and the victim database, directly on the cluster."""
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        for db in (FIXTURE_DB, VICTIM_DB):
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {db}")
    reset_schema(pg)


def drop_fixture_databases(pg: PgCluster) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        for db in (FIXTURE_DB, VICTIM_DB):
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def reset_schema(pg: PgCluster) -> None:
    """Put back everything `snapshot` looks at (after a statement that changed it)."""
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [VICTIM_DB]).fetchone():
            conn.execute(f"CREATE DATABASE {VICTIM_DB}")
    with psycopg.connect(fixture_dsn(pg), autocommit=True) as conn:
        # Only what the corpus could have set: the cluster's own settings live in that file.
        conn.execute("ALTER SYSTEM RESET session_replication_role")
        conn.execute(SCHEMA_SQL)


def table_rows(conn: psycopg.Connection[Any]) -> dict[str, str | None]:
    """md5 of every fixture table's rows (None: the table is gone)."""
    out: dict[str, str | None] = {}
    for table in FIXTURE_TABLES:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()
        if not (exists and exists[0]):
            out[table] = None
            continue
        row = conn.execute(
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)),"
            f" '') FROM {table} t"
        ).fetchone()
        assert row is not None
        out[table] = str(row[0])
    return out


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, str | None]
    catalog: frozenset[str]

    def diff(self, other: Snapshot) -> str:
        lines = [
            f"rows of {t}: {self.rows[t]} -> {other.rows.get(t)}"
            for t in self.rows
            if self.rows[t] != other.rows.get(t)
        ]
        lines += [f"gone: {x}" for x in sorted(self.catalog - other.catalog)]
        lines += [f"new:  {x}" for x in sorted(other.catalog - self.catalog)]
        return "\n".join(lines)


def snapshot(pg: PgCluster) -> Snapshot:
    """Everything a refused statement must have left alone, read directly on the cluster."""
    with psycopg.connect(fixture_dsn(pg), autocommit=True) as conn:
        rows = table_rows(conn)
        try:
            catalog = frozenset(r[0] for r in conn.execute(_CATALOG_SQL).fetchall())
        except psycopg.errors.UndefinedTable:  # app.user_ids is gone
            conn.execute("SELECT 1")
            catalog = frozenset(["sequence app.user_ids missing"])
    return Snapshot(rows, catalog)


def direct_fetch(pg: PgCluster, sql: str, params: list[Any] | None = None) -> list[Any]:
    with psycopg.connect(fixture_dsn(pg), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


# ---------------------------------------------------------------------------- corpora


def load_corpus(name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load((CORPUS / f"{name}.yaml").read_text())
    return entries


def statement_count(sql: str) -> int:
    """How many top-level statements PostgreSQL's grammar sees (0 when it cannot parse)."""
    try:
        return len(pglast.split(sql))
    except Exception:  # pglast raises its own ParseError; any failure means "not one"
        return 0


SIMPLE = "simple"  # one Query message (psycopg without parameters, prepare=False)
EXTENDED = "extended"  # Parse/Bind/Execute/Sync (psycopg prepare=True)
ASYNCPG = "asyncpg"  # asyncpg fetch: Parse+Describe, then Bind+Execute
RAW = "raw"  # a hand-built Query message (what ordinary clients cannot send)


def protocols_for(entry: dict[str, Any]) -> list[str]:
    """Which ways of sending this text exist: several statements fit only one Query."""
    if "\x00" in entry["sql"]:
        return [RAW]
    if statement_count(entry["sql"]) == 1:
        return [SIMPLE, EXTENDED, ASYNCPG]
    return [SIMPLE]


# ---------------------------------------------------------------------------- clients


# Asked on the same connection right after the statement: the session still answers, and
# the statement left no session state behind (triggers and FKs not switched off, no
# SQL-level prepared statement waiting for a later EXECUTE).
SESSION_PROBE = (
    "SELECT current_setting('session_replication_role'), "
    "(SELECT count(*) FROM pg_prepared_statements WHERE from_sql)::int"
)
CLEAN_SESSION = ("origin", 0)


@dataclass
class Outcome:
    """What the client saw: the error's SQLSTATE / message / hint, or None for success."""

    sqlstate: str | None
    message: str = ""
    hint: str = ""
    session_after: tuple[Any, ...] | None = None  # SESSION_PROBE's row; None: no answer

    @property
    def usable_after(self) -> bool:
        return self.session_after is not None

    @property
    def clean_after(self) -> bool:
        return self.session_after == CLEAN_SESSION


def run_psycopg(
    proxy: ProxyProcess, sql: str, *, prepare: bool, setup: tuple[str, ...] = ()
) -> Outcome:
    conn = psycopg.connect(proxy.dsn(dbname=FIXTURE_DB), autocommit=True)
    try:
        for stmt in setup:
            conn.execute(stmt, prepare=False)
        try:
            cur = conn.execute(sql, prepare=prepare)
            while cur.nextset():
                pass
            outcome = Outcome(None)
        except psycopg.Error as exc:
            outcome = Outcome(
                exc.sqlstate, exc.diag.message_primary or "", exc.diag.message_hint or ""
            )
        with contextlib.suppress(psycopg.Error):
            outcome.session_after = conn.execute(SESSION_PROBE, prepare=False).fetchone()
    finally:
        conn.close()  # no context manager: its COMMIT would fail on a connection in COPY
    return outcome


async def _run_asyncpg(proxy: ProxyProcess, sql: str, setup: tuple[str, ...]) -> Outcome:
    conn = await asyncpg.connect(
        host=proxy.host, port=proxy.port, user="postgres", database=FIXTURE_DB, ssl=False
    )
    try:
        for stmt in setup:
            await conn.execute(stmt)
        try:
            await conn.fetch(sql)
            outcome = Outcome(None)
        except asyncpg.PostgresError as exc:
            outcome = Outcome(
                exc.sqlstate, getattr(exc, "message", ""), getattr(exc, "hint", None) or ""
            )
        try:
            row = await conn.fetchrow(SESSION_PROBE)
            outcome.session_after = None if row is None else tuple(row)
        except (asyncpg.PostgresError, asyncpg.InterfaceError):
            pass
    finally:
        conn.terminate()
    return outcome


def run_asyncpg(proxy: ProxyProcess, sql: str, *, setup: tuple[str, ...] = ()) -> Outcome:
    return asyncio.run(_run_asyncpg(proxy, sql, setup))


def run_raw_query(proxy: ProxyProcess, sql: str) -> Outcome:
    """Send `sql` as the body of one Query message, byte for byte (NUL bytes included)."""
    with rawpg.RawConn(proxy.host, proxy.port) as conn:
        conn.login(database=FIXTURE_DB)
        conn.send(rawpg.message(b"Q", sql.encode() + b"\x00"))
        msgs = conn.read_until([b"Z"])
        errors = [m for m in msgs if m.kind == b"E"]
        outcome = Outcome(errors[0].sqlstate if errors else None)
        if errors:
            outcome.message = errors[0].fields.get("M", "")
            outcome.hint = errors[0].fields.get("H", "")
        conn.send(rawpg.query(SESSION_PROBE))
        rows = [m for m in conn.read_until([b"Z"]) if m.kind == b"D"]
        if rows:
            outcome.session_after = _data_row_texts(rows[0].payload)
    return outcome


def run(proxy: ProxyProcess, sql: str, protocol: str, setup: tuple[str, ...] = ()) -> Outcome:
    if protocol == SIMPLE:
        return run_psycopg(proxy, sql, prepare=False, setup=setup)
    if protocol == EXTENDED:
        return run_psycopg(proxy, sql, prepare=True, setup=setup)
    if protocol == ASYNCPG:
        return run_asyncpg(proxy, sql, setup=setup)
    assert not setup
    return run_raw_query(proxy, sql)


def _data_row_texts(payload: bytes) -> tuple[Any, ...]:
    """A text-format DataRow as Python values (ints where they look like ints)."""
    (count,) = struct.unpack_from("!h", payload)
    pos, values = 2, []
    for _ in range(count):
        (size,) = struct.unpack_from("!i", payload, pos)
        pos += 4
        text = payload[pos : pos + size].decode()
        pos += size
        values.append(int(text) if text.isdigit() else text)
    return tuple(values)
