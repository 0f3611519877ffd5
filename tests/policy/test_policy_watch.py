"""Hot reload: a changed file is picked up; a broken one never replaces the running policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from policy_support import write

from pgsentry.policy import Policy, PolicyError, load_policy
from pgsentry.policy.watch import PolicyWatcher

GOOD = (
    "version: 1\ndefault: allow\nrules:\n  - {id: one, action: deny, match: {kinds: [truncate]}}\n"
)


def touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_change_good_then_bad_then_good(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, "a.yaml")
    reloaded: list[Policy] = []
    errors: list[PolicyError] = []
    w = PolicyWatcher(
        tmp_path, load_policy(tmp_path), on_reload=reloaded.append, on_error=errors.append
    )
    first = w.current
    assert await w.check_once() is False  # nothing changed

    path.write_text(GOOD.replace("id: one", "id: two"))
    assert await w.check_once() is True
    assert [r.id for r in w.current.rules] == ["two"]
    assert reloaded == [w.current] and w.current.generation > first.generation

    path.write_text(GOOD.replace("action: deny", "action: nope"))
    touch_later(path)
    assert await w.check_once() is True
    assert [r.id for r in w.current.rules] == ["two"]  # the old policy keeps serving
    assert len(errors) == 1 and str(errors[0]).startswith(f"{path}:4: rules[0].action")
    assert await w.check_once() is False  # a broken version is reported once

    write(tmp_path, "version: 1\nrules:\n  - {id: three, action: allow}\n", "b.yaml")  # new file
    path.write_text(GOOD)
    assert await w.check_once() is True
    assert [r.id for r in w.current.rules] == ["one", "three"]
    assert len(reloaded) == 2


def test_explicit_reload_raises_and_keeps_the_old_policy(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    w = PolicyWatcher(path, load_policy(path))
    old = w.current
    path.write_text("version: 2\ndefault: allow\n")
    with pytest.raises(PolicyError, match=r"policy.yaml:1: version"):
        w.reload()
    assert w.current is old
    path.write_text(GOOD)
    assert w.reload() is w.current is not old


async def test_polling_task_picks_up_a_change(tmp_path: Path) -> None:
    import asyncio

    path = write(tmp_path, GOOD)
    changed = asyncio.Event()
    w = PolicyWatcher(path, load_policy(path), on_reload=lambda p: changed.set(), interval=0.05)
    w.start()
    try:
        path.write_text(GOOD.replace("id: one", "id: polled"))
        await asyncio.wait_for(changed.wait(), timeout=10)
        assert w.current.rules[0].id == "polled"
    finally:
        await w.stop()
