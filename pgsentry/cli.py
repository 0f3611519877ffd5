"""The `pgsentry` command: run, check, explain, holds, approvers.

Owns argument parsing and dispatch only. Settings for `run` come from PGSENTRY_*
environment variables; a flag given on the command line overrides its variable. A bad
argument is one line on stderr and exit code 2; a closed stdout (`| head`) ends quietly.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

RUN_FLAGS: list[tuple[str, str]] = [
    ("--listen", "HOST:PORT to accept clients on (default 127.0.0.1:6432)"),
    ("--upstream", "postgresql://HOST:PORT of the database (default 127.0.0.1:5432)"),
    ("--policies", "policy file or directory (default ./policies)"),
    ("--audit-log", "audit log file, '-' for stdout (default -)"),
    ("--admin-listen", "HOST:PORT of the admin HTTP listener; '' disables it"),
    ("--tls-cert-file", "certificate presented to clients that ask for TLS"),
    ("--tls-key-file", "private key of --tls-cert-file"),
    ("--upstream-sslmode", "disable | prefer | require | verify-ca | verify-full"),
    ("--upstream-ssl-ca-file", "CA bundle to verify the upstream's certificate"),
    ("--connect-timeout-seconds", "upstream connect timeout (default 5)"),
    ("--shutdown-grace-seconds", "time statements in flight get on SIGTERM (default 30)"),
    ("--policy-watch-seconds", "how often policy files are checked for changes; 0 = SIGHUP only"),
    ("--approvers-file", "approvers file (see `pgsentry approvers add`)"),
    ("--webhook-secret", "whsec_... secret used to sign webhook notifications"),
    ("--webhook-format", "json (Standard Webhooks) | slack"),
    ("--public-url", "base URL of the admin listener as approvers reach it"),
    ("--log-level", "debug | info | warning | error"),
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgsentry", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the proxy")
    for flag, help_ in RUN_FLAGS:
        run.add_argument(flag, help=help_, default=None)
    run.add_argument("--tls-require", action="store_true", default=None, help="refuse plaintext")
    run.add_argument(
        "--webhook-url", action="append", default=None, help="webhook receiver (repeatable)"
    )

    check = sub.add_parser("check", help="validate policy files and run their test cases")
    check.add_argument("paths", nargs="+", type=Path)

    ex = sub.add_parser("explain", help="show the facts of SQL and the rule that decides it")
    ex.add_argument("sql")
    ex.add_argument("--policies", type=Path, default=Path("policies"))
    ex.add_argument("--user", default="postgres")
    ex.add_argument("--database", default="postgres")
    ex.add_argument("--application-name", default="")
    ex.add_argument("--client-addr", default=None)
    ex.add_argument("--in-transaction", action="store_true")
    ex.add_argument(
        "--at", default=None, help="ISO 8601 time with an offset to evaluate at (default now)"
    )

    holds = sub.add_parser("holds", help="list, show, approve or deny held statements")
    holds.add_argument("action", choices=["list", "show", "approve", "deny"])
    holds.add_argument("hold_id", nargs="?")
    holds.add_argument("--reason", default=None)
    holds.add_argument("--url", default=os.environ.get("PGSENTRY_URL", "http://127.0.0.1:9187"))
    holds.add_argument("--token", default=os.environ.get("PGSENTRY_TOKEN", ""))

    appr = sub.add_parser("approvers", help="manage approvers")
    appr.add_argument("action", choices=["add", "remove"])
    appr.add_argument("name")
    appr.add_argument("--file", type=Path, default=Path("approvers.yaml"))
    appr.add_argument("--group", action="append", default=[])
    appr.add_argument("--db-user", action="append", default=[])
    return p


def _run(args: argparse.Namespace) -> int:
    from pgsentry.app import run
    from pgsentry.config import load_settings

    overrides: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key == "command" or value is None:
            continue
        overrides["webhook_urls" if key == "webhook_url" else key] = value
    try:
        settings = load_settings(**overrides)
    except ValueError as exc:
        print(f"pgsentry: {exc}", file=sys.stderr)
        return 2
    return run(settings)


def _explain_at(value: str | None) -> datetime | None:
    """`--at`: an ISO 8601 time with an offset (like a policy test case's `at`)."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--at: not an ISO 8601 time: {value!r}") from None
    if at.tzinfo is None:
        raise ValueError(f"--at: give a time zone offset, e.g. {value}+02:00 or {value}Z")
    return at


def _explain_client_addr(value: str | None) -> str | None:
    if value is not None:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"--client-addr: not an IP address: {value!r}") from None
    return value


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "check":
        from pgsentry.policy.commands import check_command

        return check_command(args.paths, sys.stdout)
    if args.command == "explain":
        from pgsentry.policy.commands import explain_command

        try:
            at = _explain_at(args.at)
            client_addr = _explain_client_addr(args.client_addr)
        except ValueError as exc:
            print(f"pgsentry explain: {exc}", file=sys.stderr)
            return 2
        return explain_command(
            args.policies,
            args.sql,
            user=args.user,
            database=args.database,
            application_name=args.application_name,
            client_addr=client_addr,
            in_transaction=args.in_transaction,
            at=at,
            out=sys.stdout,
        )
    if args.command == "holds":
        from pgsentry.admin.holds_cli import holds_command

        return holds_command(
            args.action, args.hold_id, args.reason, url=args.url, token=args.token, out=sys.stdout
        )
    from pgsentry.holds import approvers_add_command, approvers_remove_command

    if args.action == "add":
        return approvers_add_command(args.file, args.name, args.group, args.db_user, sys.stdout)
    return approvers_remove_command(args.file, args.name, sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
