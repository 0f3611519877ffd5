"""Real tools pointed at production through pgsentry with the shipped policies: the incidents
pgsentry exists for. `pg_restore --clean` of a dump, an Alembic downgrade that drops a
table, `psql -c "DELETE FROM accounts"` (in test_semantics). Each is stopped and the
database, compared directly on the cluster with `pg_dump`, is exactly as before.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.helpers import client_env, run_client

from pgsentry.devtools import PgCluster, ProxyProcess

pytestmark = pytest.mark.timeout(120)

PROD = "tools_prod"

# Every table has a primary key, as production tables do; plus what a real schema has
# around its tables (a serial default, an index, a trigger and its function, a view).
PROD_SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int);
CREATE TABLE orders (id serial PRIMARY KEY, account_id int REFERENCES accounts, total int);
CREATE INDEX orders_account_id ON orders (account_id);
CREATE SCHEMA app;
CREATE TABLE app.users (id int PRIMARY KEY, name text);
CREATE VIEW app.big_accounts AS SELECT * FROM accounts WHERE balance > 1000;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION app.touch();
INSERT INTO accounts SELECT i, 'owner' || i, i * 10 FROM generate_series(1, 500) i;
INSERT INTO orders (account_id, total) SELECT 1 + i % 500, i FROM generate_series(1, 2000) i;
INSERT INTO app.users SELECT i, 'user' || i FROM generate_series(1, 50) i;
"""


@pytest.fixture
def prod_db(pg: PgCluster) -> Iterator[PgCluster]:
    """A fresh production database per test: a failed test must not leak into the next."""
    pg.psql(f"DROP DATABASE IF EXISTS {PROD} WITH (FORCE)")
    pg.psql(f"CREATE DATABASE {PROD}")
    pg.psql(PROD_SCHEMA, dbname=PROD)
    yield pg
    pg.psql(f"DROP DATABASE {PROD} WITH (FORCE)")


def _dump(pg: PgCluster, *extra: str) -> bytes:
    """pg_dump directly from the cluster (never through the proxy)."""
    args = ["-h", pg.host, "-p", str(pg.port), "-U", "postgres", "--no-sync", *extra, PROD]
    return run_client(pg, "pg_dump", args).stdout


def _plain(pg: PgCluster) -> str:
    # pg_dump >= 15.14 writes a random \restrict key into every dump; it is not content.
    lines = _dump(pg).decode().splitlines()
    return "\n".join(x for x in lines if not x.startswith(("\\restrict", "\\unrestrict")))


@pytest.mark.parametrize(
    "flags",
    [
        ["--single-transaction"],
        ["--exit-on-error"],
        [],  # pg_restore's default: carry on after errors
    ],
    ids=["single-transaction", "exit-on-error", "keep-going"],
)
def test_pg_restore_clean_is_stopped(
    prod_db: PgCluster,
    shipped_proxy: ProxyProcess,
    tmp_path_factory: pytest.TempPathFactory,
    flags: list[str],
) -> None:
    before = _plain(prod_db)
    dump = tmp_path_factory.mktemp("dump") / "prod.dump"
    dump.write_bytes(_dump(prod_db, "-Fc"))
    via_proxy = ["-h", shipped_proxy.host, "-p", str(shipped_proxy.port), "-U", "postgres"]
    proc = run_client(
        prod_db,
        "pg_restore",
        [*via_proxy, "--clean", "--if-exists", *flags, "-d", PROD, str(dump)],
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode != 0, err
    assert "pgsentry: statement denied by rule " in err  # the first drop pgsentry refuses
    # pg_restore --clean first drops every constraint (ALTER TABLE ... DROP CONSTRAINT),
    # then the tables: the denied DROP TABLE alone does not keep the database intact.
    assert _plain(prod_db) == before


ALEMBIC_ENV = """
from alembic import context
from sqlalchemy import create_engine

url = context.config.get_main_option("sqlalchemy.url")
with create_engine(url).connect() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
"""

MIGRATION = '''
"""create invoices"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    invoices = op.create_table(
        "invoices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("total", sa.Integer, nullable=False),
    )
    op.bulk_insert(invoices, [{"id": i, "total": i * 3} for i in range(1, 11)])


def downgrade():
    op.drop_table("invoices")
'''


def _alembic_project(root: Path) -> Path:
    (root / "versions").mkdir(parents=True)
    (root / "env.py").write_text(ALEMBIC_ENV)
    (root / "versions" / "0001_create_invoices.py").write_text(MIGRATION)
    return root


def _alembic(root: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real alembic command line, in a subprocess, against `url`."""
    ini = root / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {root}\nsqlalchemy.url = {url}\n")
    cmd = [sys.executable, "-m", "alembic", "-c", str(ini), "--raiseerr", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=client_env(), timeout=60, check=False
    )


def test_alembic_downgrade_that_drops_a_table_is_stopped(
    prod_db: PgCluster, shipped_proxy: ProxyProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    project = _alembic_project(tmp_path_factory.mktemp("alembic"))
    direct = f"postgresql+psycopg://postgres@{prod_db.host}:{prod_db.port}/{PROD}"
    proxied = f"postgresql+psycopg://postgres@{shipped_proxy.host}:{shipped_proxy.port}/{PROD}"
    try:
        up = _alembic(project, direct, "upgrade", "head")
        assert up.returncode == 0, up.stderr
        before = _plain(prod_db)
        assert "CREATE TABLE public.invoices" in before

        down = _alembic(project, proxied, "downgrade", "base")
        assert down.returncode != 0, down.stdout + down.stderr
        assert "InsufficientPrivilege" in down.stderr
        assert "pgsentry: statement denied by rule no-drop-table" in down.stderr
        # the table, its rows and alembic's own version row: all as before
        assert _plain(prod_db) == before
        version = prod_db.psql("SELECT version_num FROM alembic_version", dbname=PROD)
        assert version.strip() == "0001"
    finally:
        prod_db.psql("DROP TABLE IF EXISTS invoices, alembic_version", dbname=PROD)


def test_restore_into_an_empty_database_through_the_proxy_still_works(
    prod_db: PgCluster, shipped_proxy: ProxyProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No false positive on the ordinary use of the same tool: a restore without --clean."""
    prod_db.psql("DROP DATABASE IF EXISTS tools_copy WITH (FORCE)")
    prod_db.psql("CREATE DATABASE tools_copy")
    dump = tmp_path_factory.mktemp("dump") / "prod.dump"
    dump.write_bytes(_dump(prod_db, "-Fc"))
    via_proxy = ["-h", shipped_proxy.host, "-p", str(shipped_proxy.port), "-U", "postgres"]
    run_client(
        prod_db, "pg_restore", [*via_proxy, "--exit-on-error", "-d", "tools_copy", str(dump)]
    )
    count = prod_db.psql("SELECT count(*) FROM orders", dbname="tools_copy")
    assert count.strip() == "2000"
    prod_db.psql("DROP DATABASE tools_copy WITH (FORCE)")


def test_pg_dump_through_the_proxy_works(prod_db: PgCluster, shipped_proxy: ProxyProcess) -> None:
    """A backup is not an incident: pg_dump (15.14 and later set restrict_nonsystem_relation_kind
    through set_config(name, ...) FROM pg_settings) dumps the same through the proxy."""
    via_proxy = ["-h", shipped_proxy.host, "-p", str(shipped_proxy.port), "-U", "postgres"]
    dumped = run_client(prod_db, "pg_dump", [*via_proxy, "--no-sync", PROD]).stdout.decode()
    lines = [x for x in dumped.splitlines() if not x.startswith(("\\restrict", "\\unrestrict"))]
    assert "\n".join(lines) == _plain(prod_db)


def test_pg_dump_of_a_database_with_a_large_object_works(
    prod_db: PgCluster, shipped_proxy: ProxyProcess
) -> None:
    """pg_dump reads large objects with FunctionCall (lo_open, loread, lo_close): the shipped
    policy allows the large-object calls that read and write, never lo_unlink."""
    prod_db.psql("SELECT lo_from_bytea(424242, 'large object body')", dbname=PROD)
    try:
        via_proxy = ["-h", shipped_proxy.host, "-p", str(shipped_proxy.port), "-U", "postgres"]
        dumped = run_client(prod_db, "pg_dump", [*via_proxy, "--no-sync", "-Fp", PROD]).stdout
        assert b"SELECT pg_catalog.lo_open('424242', 131072);" in dumped
        assert b"large object body".hex().encode() in dumped
        unlink = run_client(
            prod_db, "psql", [*via_proxy, "-d", PROD, "-c", "\\lo_unlink 424242"], check=False
        )
        assert b"function call oid 964" in unlink.stderr
        assert (
            prod_db.psql(
                "SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 424242", dbname=PROD
            )
            .strip()
            .endswith("1")
        )
    finally:
        prod_db.psql("SELECT lo_unlink(424242)", dbname=PROD)


def test_a_physical_replication_connection_is_decided_by_on_unparseable(
    prod_db: PgCluster, shipped_proxy: ProxyProcess, proxy: ProxyProcess
) -> None:
    """Replication commands are not SQL: the shipped policy (on_unparseable: deny) refuses
    the connection with pgsentry's own message; the allow-all policy lets it work."""

    def identify(p: ProxyProcess) -> subprocess.CompletedProcess[bytes]:
        conninfo = f"host={p.host} port={p.port} user=postgres dbname=postgres replication=true"
        return run_client(prod_db, "psql", [conninfo, "-Atc", "IDENTIFY_SYSTEM"], check=False)

    refused = identify(shipped_proxy)
    assert refused.returncode != 0
    assert b"pgsentry: physical replication connections are refused" in refused.stderr
    allowed = identify(proxy)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.count(b"|") == 3  # systemid|timeline|xlogpos|dbname
