"""Orchestration of one benchmark run: options, cluster, targets, interleaved rounds, report.

Owns the order of runs (each workload row: direct, pgsentry, pgbouncer, repeated `rounds`
times), the throwaway cluster's settings, and writing/printing the report. Must not parse
tool output or read /proc itself (see workloads, procfs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgsentry.bench import workloads
from pgsentry.bench.decision import decision_table
from pgsentry.bench.machine import describe
from pgsentry.bench.middles import Middle, MiddleError, PgBouncer, PgSentry, Target
from pgsentry.bench.report import Column, SectionSpec, Table, render
from pgsentry.bench.results import Section
from pgsentry.devtools.pgcluster import PgCluster

REPO_ROOT = Path(__file__).resolve().parents[2]

SELECT_ONLY = SectionSpec(
    "pgbench select-only",
    (
        Column("tps", "TPS", 0),
        Column("latency_ms", "latency avg ms", 3),
        Column("cpu_us_per_tx", "middle CPU µs/tx", 1),
    ),
    "tps",
    "Median over the rounds, (min-max) in brackets; ratios are of medians (TPS). Middle CPU "
    "is utime+stime of the proxy process (and its children) from /proc, per transaction.",
)
TPCB = SectionSpec("pgbench TPC-B-like", SELECT_ONLY.columns, "tps")
BULK = SectionSpec(
    "Bulk COPY",
    (Column("mb_s", "MB/s", 0), Column("cpu_s_per_gb", "middle CPU s/GB", 2)),
    "mb_s",
    "psql `COPY bench_copy_src TO STDOUT` into /dev/null, and `COPY bench_copy_dst FROM "
    "STDIN` from a file (both tables UNLOGGED, the target truncated before each run). "
    "MB = 10^6 bytes of COPY text; wall time includes connecting.",
)
IDLE = SectionSpec(
    "Idle connections",
    (
        Column("rss_before_kb", "RSS before (KiB)", 0),
        Column("rss_after_kb", "RSS after (KiB)", 0),
        Column("kb_per_conn", "KiB per connection", 2),
    ),
    None,
    "Each round starts the middle afresh, makes one warm-up connection, then opens the "
    "client connections (each runs SELECT 1 once, autocommit, then stays idle) and reads "
    "VmRSS of the middle from /proc. Direct has no middle process.",
)


@dataclass(frozen=True)
class Config:
    quick: bool
    rounds: int
    duration: int  # seconds per pgbench run (full mode)
    transactions: int | None  # per client, quick mode instead of a duration
    scale: int
    clients: tuple[int, ...]
    copy_bytes: int
    idle_conns: int
    sections: frozenset[str]

    @staticmethod
    def from_args(a: argparse.Namespace) -> Config:
        q = bool(a.quick)
        return Config(
            quick=q,
            rounds=a.rounds or (2 if q else 3),
            duration=a.duration or (1 if q else 10),
            transactions=None if a.duration or not q else 100,
            scale=a.scale or (1 if q else 10),
            clients=(1, 8, 32),
            copy_bytes=int((a.copy_mb or (20 if q else 1000)) * 1e6),
            idle_conns=a.idle or (100 if q else 2000),
            sections=frozenset(a.sections.split(",")),
        )


ALL_SECTIONS = "select,tpcb,copy,idle,decision"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pgsentry.bench",
        description="Benchmark direct vs pgsentry vs pgbouncer on a throwaway cluster.",
    )
    p.add_argument("--quick", action="store_true", help="smoke mode: seconds, tiny sizes")
    p.add_argument("--out", type=Path, default=Path("bench-results.md"), help="markdown file")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 2)")
    p.add_argument("--duration", type=int, help="seconds per pgbench run (default 10)")
    p.add_argument("--scale", type=int, help="pgbench scale (default 10; quick 1)")
    p.add_argument("--copy-mb", type=float, help="MB of COPY text (default 1000; quick 20)")
    p.add_argument("--idle", type=int, help="idle client connections (default 2000; quick 100)")
    p.add_argument("--policies", type=Path, default=REPO_ROOT / "policies")
    p.add_argument("--sections", default=ALL_SECTIONS, help=f"subset of {ALL_SECTIONS}")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 if any run failed or pgsentry was unavailable"
    )
    return p.parse_args(argv)


def raise_nofile(needed: int) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return f"{soft}"
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return f"{needed} (raised)"
        except (ValueError, OSError):
            needed = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return f"{needed} (raised)"


def _loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _git_revision() -> str:
    """The commit the code under test comes from, and whether the tree differs from it."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "pgsentry"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"git {rev}" + (" plus uncommitted changes under pgsentry/" if dirty else "")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, cfg: Config, cluster: PgCluster, targets: list[Target]) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.bindir = cluster.bindir
        self.targets = targets
        self.sections: list[tuple[SectionSpec, Section]] = []

    @property
    def live(self) -> list[Target]:
        return [t for t in self.targets if t.unavailable is None]

    def _interleave(
        self,
        section: Section,
        label: str,
        run: Callable[[Target], workloads.Metrics],
        before: Callable[[], object] | None = None,
    ) -> None:
        for rnd in range(self.cfg.rounds):
            for t in self.live:
                log(f"{label} via {t.name}, round {rnd + 1}/{self.cfg.rounds}")
                runs = section.runs(label, t.name)
                try:
                    if before is not None:
                        before()
                    runs.add(run(t))
                except Exception as e:  # reported in the table, never fatal
                    note = self._revive(t)
                    runs.errors.append(f"round {rnd + 1}: {type(e).__name__}: {e}{note}")
                    log(f"  failed: {e}")

    def _revive(self, t: Target) -> str:
        """Restart a middle that exited during a run, so later rows still measure it.
        Returns a note for the run's error (the exit and the middle's last log lines)."""
        if t.middle is None or t.middle.alive:
            return ""
        note = f" ({t.name} had exited; its last log lines: {t.middle.log_tail()}; restarted)"
        log(f"  {note}")
        t.middle.stop()
        try:
            t.middle.start()
        except MiddleError as e:
            note += f" (restart failed: {e})"
        return note

    def _pgbench_spec(
        self, select_only: bool, protocol: str, clients: int
    ) -> workloads.PgbenchSpec:
        threads = max(1, min(clients, len(os.sched_getaffinity(0))))
        return workloads.PgbenchSpec(
            select_only, protocol, clients, threads, self.cfg.duration, self.cfg.transactions
        )

    def _pgbench_runner(self, spec: workloads.PgbenchSpec) -> Callable[[Target], workloads.Metrics]:
        return functools.partial(workloads.run_pgbench, spec, self.bindir)

    def run_select_only(self) -> None:
        section = Section()
        self.sections.append((SELECT_ONLY, section))
        for t in self.live:  # warm-up, not recorded
            spec = self._pgbench_spec(True, "simple", 8)
            try:
                workloads.run_pgbench(spec, self.bindir, t)
            except workloads.WorkloadError as e:
                log(f"warm-up via {t.name} failed: {e}")
        for protocol in ("simple", "prepared"):
            for clients in self.cfg.clients:
                spec = self._pgbench_spec(True, protocol, clients)
                self._interleave(section, spec.label, self._pgbench_runner(spec))

    def run_tpcb(self) -> None:
        section = Section()
        self.sections.append((TPCB, section))
        spec = self._pgbench_spec(False, "simple", 8)

        def vacuum() -> None:  # what pgbench does itself without -n, done directly
            for sql in ("VACUUM pgbench_branches", "VACUUM pgbench_tellers"):
                self.cluster.psql(sql)
            self.cluster.psql("TRUNCATE pgbench_history")

        self._interleave(section, spec.label, self._pgbench_runner(spec), vacuum)

    def run_copy(self, workdir: Path) -> None:
        section = Section()
        self.sections.append((BULK, section))
        rows = max(1000, self.cfg.copy_bytes // 100)  # about 100 bytes of text per row
        log(f"generating {rows} rows for COPY")
        self.cluster.psql(
            "DROP TABLE IF EXISTS bench_copy_src, bench_copy_dst;"
            "CREATE UNLOGGED TABLE bench_copy_src AS SELECT g AS id, md5(g::text) AS h, "
            f"repeat('x', 56) AS pad FROM generate_series(1, {rows}) g;"
            "CREATE UNLOGGED TABLE bench_copy_dst (LIKE bench_copy_src);"
        )
        data = workdir / "copy.txt"
        direct = next(t for t in self.targets if t.name == "direct")
        with data.open("wb") as f:
            subprocess.run(
                workloads.psql_argv(self.bindir, direct, "COPY bench_copy_src TO STDOUT"),
                stdout=f,
                env=workloads.client_env(),
                check=True,
            )
        nbytes = data.stat().st_size
        mb = nbytes / 1e6
        self._interleave(
            section,
            f"COPY TO STDOUT, {mb:,.0f} MB",
            lambda t: workloads.run_copy(self.bindir, t, to_stdout=True, data=data, nbytes=nbytes),
        )
        self._interleave(
            section,
            f"COPY FROM STDIN, {mb:,.0f} MB",
            lambda t: workloads.run_copy(self.bindir, t, to_stdout=False, data=data, nbytes=nbytes),
            lambda: self.cluster.psql("TRUNCATE bench_copy_dst"),
        )
        data.unlink()

    def _wait_backends_below(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        sql = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        while int(self.cluster.psql(sql).strip()) > n and time.monotonic() < deadline:
            time.sleep(0.2)

    def run_idle(self) -> None:
        section = Section()
        self.sections.append((IDLE, section))
        label = f"{self.cfg.idle_conns} idle connections"
        middles = [t for t in self.live if t.middle is not None]
        for t in middles:  # pgbouncer keeps its pooled server connections open otherwise
            assert t.middle is not None
            t.middle.stop()
        for rnd in range(self.cfg.rounds):
            for t in middles:
                assert t.middle is not None
                log(f"{label} via {t.name}, round {rnd + 1}/{self.cfg.rounds}")
                runs = section.runs(label, t.name)
                self._wait_backends_below(10)
                try:
                    t.middle.start()
                    settle = 0.3 if self.cfg.quick else 1.0
                    runs.add(workloads.run_idle(t, self.cfg.idle_conns, settle))
                except Exception as e:  # any failure is reported, never fatal
                    runs.errors.append(f"round {rnd + 1}: {type(e).__name__}: {e}")
                    log(f"  failed: {e}")
                finally:
                    t.middle.stop()
        self._wait_backends_below(10)
        for t in middles:
            assert t.middle is not None
            t.middle.start()


def _start_targets(cfg: Config, cluster: PgCluster, workdir: Path, policies: Path) -> list[Target]:
    targets = [Target("direct", cluster.port)]
    makers: list[tuple[str, Callable[[], Middle]]] = [
        ("pgsentry", lambda: PgSentry(workdir / "pgsentry", cluster.port, policies)),
        ("pgbouncer", lambda: PgBouncer(workdir / "pgbouncer", cluster.port, cfg.idle_conns + 50)),
    ]
    for name, make in makers:
        target = Target(name, cluster.port)
        try:
            middle = make()
            middle.start()
            target.middle = middle
            probe = workloads.PgbenchSpec(True, "simple", 1, 1, 1, 10)
            workloads.run_pgbench(probe, cluster.bindir, target)
        except (MiddleError, workloads.WorkloadError, OSError) as e:
            target.unavailable = str(e).strip().splitlines()[0][:300] if str(e) else repr(e)
            if target.middle is not None:
                target.middle.stop()
                target.middle = None
            log(f"{name}: not available: {target.unavailable}")
        targets.append(target)
    return targets


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.from_args(args)
    command = shlex.join(getattr(sys, "orig_argv", sys.argv))
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    load_start = _loadavg()
    nofile = raise_nofile(cfg.idle_conns * 3 + 256)
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="pgsentry-bench-"))
    tmp.chmod(0o755)
    policies = args.policies.resolve()
    cluster = PgCluster(
        tmp / "pg",
        extra_conf={
            "max_connections": str(cfg.idle_conns + 100),
            "shared_buffers": "256MB",
        },
    )
    targets: list[Target] = []
    decision = None
    if "decision" in cfg.sections:
        log("decision cost (before anything else runs)")
        decision = decision_table(cfg.quick, policies, _loadavg(), cfg.rounds)
    try:
        log(f"starting PostgreSQL in {tmp}")
        cluster.start()
        server_version = cluster.psql("SHOW server_version").strip()
        direct = Target("direct", cluster.port)
        log(f"pgbench -i -s {cfg.scale}")
        subprocess.run(
            [
                str(cluster.bindir / "pgbench"),
                *workloads.conn_args(direct),
                *("-i", "-q", "-s", str(cfg.scale), "postgres"),
            ],
            env=workloads.client_env(),
            check=True,
            capture_output=True,
        )
        targets = _start_targets(cfg, cluster, tmp, policies)
        bench = Bench(cfg, cluster, targets)
        if "select" in cfg.sections:
            bench.run_select_only()
        if "tpcb" in cfg.sections:
            bench.run_tpcb()
        if "copy" in cfg.sections:
            bench.run_copy(tmp)
        if "idle" in cfg.sections:
            bench.run_idle()
        machine = describe(cluster.bindir, server_version)
    finally:
        for t in targets:
            if t.middle is not None:
                t.middle.stop()
        cluster.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    elapsed = time.monotonic() - t0

    run = Table("Run", ("item", "value"))
    mode = "quick (smoke, figures not meaningful)" if cfg.quick else "full"
    per_run = (
        f"{cfg.transactions} transactions per client"
        if cfg.transactions
        else f"{cfg.duration} s per run"
    )
    run.rows += [
        ("command", f"`{command}`"),
        ("started", started),
        ("wall time", f"{elapsed:.0f} s"),
        ("load average (1, 5, 15 min)", f"start {load_start}, end {_loadavg()}"),
        ("pgsentry code", _git_revision()),
        ("mode", mode),
        (
            "rounds",
            f"{cfg.rounds}, interleaved per workload row: "
            + ", ".join(t.name for t in targets if t.unavailable is None),
        ),
        ("pgbench", f"scale {cfg.scale}, {per_run}, -j min(clients, nproc), -n, over TCP"),
        (
            "PostgreSQL settings",
            f"PgCluster defaults (fsync off, synchronous_commit off) + max_connections "
            f"{cfg.idle_conns + 100}, shared_buffers 256MB",
        ),
        ("pgsentry", f"policies {policies}, audit log to a file"),
        ("pgbouncer", "session mode, auth trust, default_pool_size = max clients"),
        ("RLIMIT_NOFILE", nofile),
    ]
    for t in targets:
        run.rows.append(
            (
                f"target {t.name}",
                "measured" if t.unavailable is None else f"not available: {t.unavailable}",
            )
        )
    mach = Table("Machine", ("item", "value"), [*machine])
    trailer = [decision] if decision is not None else []
    text = render(
        "pgsentry benchmark",
        [run, mach],
        bench.sections,
        [(t.name, t.unavailable) for t in targets],
        trailer,
    )
    args.out.write_text(text)
    print(text)
    log(f"wrote {args.out}")
    if args.strict:
        failed = any(t.unavailable for t in targets if t.name != "pgbouncer") or any(
            r.errors for _, s in bench.sections for row in s.rows.values() for r in row.values()
        )
        return 1 if failed else 0
    return 0
