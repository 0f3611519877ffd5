"""SQL-level prepared statements: the proxy's idea of what a name means must follow the
server's. A PREPARE body is judged again at each EXECUTE (the caller, the time and the
transaction may have changed), so the name -> body map must change only when the server's
does: a refused text never reaches the server and must not add, replace or forget names.

Uses its own policy: deletes without WHERE are allowed for application_name `maint` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgsentry.devtools import PgCluster, ProxyProcess
from pgsentry.devtools.testkit import ProxyFactory

from .support import FIXTURE_DB, direct_fetch, reset_schema

pytestmark = pytest.mark.timeout(60)

POLICY = """
version: 1
default: allow
on_unparseable: deny
rules:
  - id: maintenance-may-wipe
    action: allow
    match: {kinds: [delete]}
    who: {application_names: [maint]}
  - id: no-delete-without-where
    action: deny
    match: {kinds: [delete], where: [missing, tautological]}
  - id: no-drop-table
    action: deny
    match: {kinds: [drop_table]}
"""

Denied = psycopg.errors.InsufficientPrivilege


@pytest.fixture(scope="module")
def maint_proxy(
    module_proxy_factory: ProxyFactory,
    fixture_db: PgCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> ProxyProcess:
    policy_dir: Path = tmp_path_factory.mktemp("maint-policy")
    (policy_dir / "policy.yaml").write_text(POLICY)
    return module_proxy_factory(policies=policy_dir)


@pytest.fixture(autouse=True)
def _fresh_schema(fixture_db: PgCluster) -> Iterator[None]:
    yield
    reset_schema(fixture_db)


def _orders(pg: PgCluster) -> int:
    return int(direct_fetch(pg, "SELECT count(*) FROM orders")[0][0])


def _maint(proxy: ProxyProcess) -> psycopg.Connection[tuple[object, ...]]:
    dsn = proxy.dsn(dbname=FIXTURE_DB, application_name="maint")
    return psycopg.connect(dsn, autocommit=True)


def test_execute_is_judged_again_for_the_current_caller(
    maint_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    with _maint(maint_proxy) as conn:
        conn.execute("PREPARE p AS DELETE FROM orders")
        conn.execute("SET application_name = 'web'")
        with pytest.raises(Denied):
            conn.execute("EXECUTE p")
    assert _orders(fixture_db) == 200


@pytest.mark.parametrize(
    "refused",
    [
        "DEALLOCATE p; DROP TABLE accounts",
        "DEALLOCATE ALL; DROP TABLE accounts",
        "DISCARD ALL; DROP TABLE accounts",
    ],
)
def test_refused_text_does_not_make_the_proxy_forget_a_name(
    maint_proxy: ProxyProcess, fixture_db: PgCluster, refused: str
) -> None:
    with _maint(maint_proxy) as conn:
        conn.execute("PREPARE p AS DELETE FROM orders")
        conn.execute("SET application_name = 'web'")
        with pytest.raises(Denied):
            conn.execute(refused)  # never reaches the server: p is still prepared there
        with pytest.raises(Denied):
            conn.execute("EXECUTE p")
    assert _orders(fixture_db) == 200


def test_refused_prepare_does_not_replace_a_name(
    maint_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    with _maint(maint_proxy) as conn:
        conn.execute("PREPARE q AS SELECT count(*) FROM orders")
        conn.execute("SET application_name = 'web'")
        with pytest.raises(Denied):
            conn.execute("PREPARE q AS DELETE FROM orders")  # the server keeps the SELECT
        assert conn.execute("EXECUTE q").fetchone() == (200,)


def test_prepare_the_server_rejects_does_not_replace_a_name(
    maint_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    with _maint(maint_proxy) as conn:
        conn.execute("PREPARE p AS DELETE FROM orders")
        conn.execute("SET application_name = 'web'")
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            conn.execute("PREPARE p AS SELECT 1")  # allowed, but the server refuses it
        with pytest.raises(Denied):
            conn.execute("EXECUTE p")  # the server would run the DELETE
    assert _orders(fixture_db) == 200


def test_deallocate_in_an_aborted_transaction_does_not_forget_a_name(
    maint_proxy: ProxyProcess, fixture_db: PgCluster
) -> None:
    with _maint(maint_proxy) as conn:
        conn.execute("PREPARE p AS DELETE FROM orders")
        conn.execute("SET application_name = 'web'")
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("DEALLOCATE p")  # the server does nothing: p stays prepared
        conn.execute("ROLLBACK")
        with pytest.raises(Denied):
            conn.execute("EXECUTE p")
    assert _orders(fixture_db) == 200
