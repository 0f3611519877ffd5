"""Hot reload: poll the policy files and swap in a new `Policy` when they change.

Owns change detection (file list, mtime, size and a content hash, polled about once a
second, no extra dependency) and the keep-the-old-policy-on-error rule. Must not log,
count metrics or install signal handlers: the composition root (app.py) does that
through the `on_reload` / `on_error` callbacks and by calling `reload()` on SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path

from pgsentry.policy.engine import Policy
from pgsentry.policy.load import PolicyError, load_policy, policy_files

Fingerprint = tuple[tuple[str, int, int, str], ...]


def fingerprint(path: Path) -> Fingerprint:
    """What the policy at `path` is made of right now: name, mtime, size, sha256."""
    try:
        files = policy_files(path)
    except PolicyError:
        return ()
    out: list[tuple[str, int, int, str]] = []
    for f in files:
        try:
            st = f.stat()
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
        except OSError:
            digest, st = "", None
        out.append((str(f), st.st_mtime_ns if st else 0, st.st_size if st else -1, digest))
    return tuple(out)


class PolicyWatcher:
    """Holds the current policy; `reload()` replaces it only with a valid one."""

    def __init__(
        self,
        path: Path,
        policy: Policy,
        *,
        on_reload: Callable[[Policy], None] | None = None,
        on_error: Callable[[PolicyError], None] | None = None,
        interval: float = 1.0,
    ) -> None:
        self.path = path
        self.current = policy
        self.on_reload = on_reload
        self.on_error = on_error
        self.interval = interval
        self._seen = fingerprint(path)
        self._task: asyncio.Task[None] | None = None

    def reload(self) -> Policy:
        """Load the files again (blocking; small files). On success the new policy
        becomes current and `on_reload` is called; on failure PolicyError is raised and
        the current policy stays."""
        self._seen = fingerprint(self.path)
        return self._apply(load_policy(self.path))

    def _apply(self, policy: Policy) -> Policy:
        self.current = policy
        if self.on_reload is not None:
            self.on_reload(policy)
        return policy

    async def check_once(self) -> bool:
        """Reload if the files changed since the last look. True if a reload was tried.
        Files are read in a worker thread; callbacks run on the event loop."""
        now = await asyncio.to_thread(fingerprint, self.path)
        if now == self._seen:
            return False
        self._seen = now  # a bad version is reported once, not every second
        try:
            policy = await asyncio.to_thread(load_policy, self.path)
        except PolicyError as exc:
            if self.on_error is not None:
                self.on_error(exc)
            return True
        self._apply(policy)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check_once()

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="policy-watch")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
