"""The approvers file: tokens printed once, stored as hashes, checked in constant time."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from holds_support import add_approver

from pgsentry.holds import (
    ApproversFileError,
    ApproverStore,
    approvers_add_command,
    approvers_remove_command,
    hash_token,
)


def test_add_prints_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "approvers.yaml"
    token = add_approver(path, "alice", ["dba"], ["alice_db", "alice_admin"])
    text = path.read_text()
    assert token.startswith("pgsa_") and len(token) > 40
    assert token not in text
    assert hash_token(token) in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store = ApproverStore(path)
    alice = store.authenticate(token)
    assert alice is not None
    assert (alice.name, alice.groups) == ("alice", ("dba",))
    assert alice.db_users == ("alice_db", "alice_admin")
    assert alice.is_requester("alice_admin") and alice.is_requester("alice")
    assert not alice.is_requester("app_user")


def test_wrong_tokens_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    token = add_approver(path, "alice", [], [])
    store = ApproverStore(path)
    for wrong in ("", token[:-1], token + "x", token.upper(), hash_token(token)):
        assert store.authenticate(wrong) is None


def test_two_approvers_get_distinct_tokens(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    t1, t2 = add_approver(path, "alice", [], []), add_approver(path, "bob", [], [])
    store = ApproverStore(path)
    a1, a2 = store.authenticate(t1), store.authenticate(t2)
    assert t1 != t2 and a1 is not None and a2 is not None
    assert (a1.name, a2.name) == ("alice", "bob")


def test_duplicate_and_invalid_names(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    add_approver(path, "alice", [], [])
    out = io.StringIO()
    assert approvers_add_command(path, "alice", [], [], out) == 1
    assert "already exists" in out.getvalue() and "pgsa_" not in out.getvalue()
    out = io.StringIO()
    assert approvers_add_command(path, "bad name!", [], [], out) == 2
    assert ApproverStore(path).names() == ["alice"]


def test_store_picks_up_changes_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    t1 = add_approver(path, "alice", [], [])
    store = ApproverStore(path)
    t2 = add_approver(path, "bob", [], [])
    assert store.authenticate(t2) is not None
    assert approvers_remove_command(path, "alice", io.StringIO()) == 0
    assert store.authenticate(t1) is None
    assert approvers_remove_command(path, "alice", io.StringIO()) == 1


def test_invalid_file_is_a_clear_error_and_last_good_file_stays(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    path.write_text("approvers:\n  - name: alice\n    token_sha256: nothex\n")
    try:
        ApproverStore(path)
    except ApproversFileError as exc:
        assert "approvers.0.token_sha256" in str(exc)
    else:
        raise AssertionError("invalid file accepted")
    path.write_text("approvers:\n  - {name: alice, token_sha256: '" + "a" * 64 + "', x: 1}\n")
    try:
        ApproverStore(path)
    except ApproversFileError as exc:
        assert "x" in str(exc)
    else:
        raise AssertionError("unknown key accepted")
    path.unlink()
    token = add_approver(path, "bob", [], [])
    store = ApproverStore(path)
    path.write_text(": not yaml : [")
    assert store.authenticate(token) is not None  # kept the last good approvers


def test_json_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "approvers.json"
    digest = hash_token("pgsa_secret-token")
    path.write_text(
        f'{{"approvers": [{{"name": "ops", "groups": ["dba"], "token_sha256": "{digest}"}}]}}'
    )
    found = ApproverStore(path).authenticate("pgsa_secret-token")
    assert found is not None and found.groups == ("dba",)
