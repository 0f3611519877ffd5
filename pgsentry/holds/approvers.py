"""Approvers: named people who may release held statements, and their credentials.

Owns the approvers file format (YAML or JSON), `Approver`, `ApproverStore` (token ->
approver, constant-time), and `approvers_add_command` / `approvers_remove_command`, the
logic behind `pgsentry approvers add|remove`. Must not keep or log a token in clear: a
token is printed once when created and only its SHA-256 is stored. SHA-256 (not a slow
KDF) is enough because tokens are 256-bit random values, never human-chosen passwords.

File format::

    approvers:
      - name: alice            # shown in audit records and to the client on denial
        groups: [dba]          # matched against a rule's `hold.groups`
        db_users: [alice, alice_admin]   # database users that are this same person
        token_sha256: 5e88...  # hex SHA-256 of the bearer token

`db_users` is the documented mapping between approver names and database users: an
approver may not approve a statement whose database user is in their `db_users` (nor one
whose user equals their name) unless the rule sets `allow_self_approval: true`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

_log = logging.getLogger(__name__)

TOKEN_PREFIX = "pgsa_"
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class ApproversFileError(ValueError):
    """The approvers file is missing, unreadable or invalid (message names the problem)."""


@dataclass(frozen=True, slots=True)
class Approver:
    name: str
    groups: tuple[str, ...] = ()
    db_users: tuple[str, ...] = ()

    def is_requester(self, db_user: str) -> bool:
        """True when `db_user` is this approver under the approver → database-user mapping."""
        return db_user == self.name or db_user in self.db_users


class _ApproverEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=_NAME_PATTERN)
    groups: list[str] = []
    db_users: list[str] = []
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _ApproversFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approvers: list[_ApproverEntry] = []


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _read(path: Path) -> _ApproversFile:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _ApproversFile()
    except OSError as exc:
        raise ApproversFileError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ApproversFileError(f"{path}: not valid YAML/JSON: {exc}") from exc
    try:
        parsed = _ApproversFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ApproversFileError(f"{path}: {where}: {err['msg']}") from exc
    names = [a.name for a in parsed.approvers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ApproversFileError(f"{path}: duplicate approver name(s): {', '.join(dupes)}")
    return parsed


def _write(path: Path, data: _ApproversFile) -> None:
    """Atomic replace, mode 0600 (the file holds credential hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data.model_dump(), sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ApproverStore:
    """The approvers of one file, re-read when the file's mtime or size changes.

    `authenticate` compares the token's hash with every approver's hash using
    `hmac.compare_digest`, without stopping at the first match, so its timing does not
    depend on which approver (if any) matched.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[tuple[Approver, bytes]] = []
        self.reload()

    @classmethod
    def from_entries(cls, entries: Sequence[tuple[Approver, str]]) -> ApproverStore:
        """An in-memory store from (approver, token_sha256) pairs (no file)."""
        store = cls(None)
        store._entries = [(a, h.encode()) for a, h in entries]
        return store

    def reload(self) -> None:
        """Read the file now. Raises ApproversFileError; the old approvers stay on error."""
        if self._path is None:
            return
        stamp = self._file_stamp()
        parsed = _read(self._path)
        self._entries = [
            (Approver(a.name, tuple(a.groups), tuple(a.db_users)), a.token_sha256.encode())
            for a in parsed.approvers
        ]
        self._stamp = stamp

    def _file_stamp(self) -> tuple[int, int, int] | None:
        assert self._path is not None
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)  # _write replaces: a new inode

    def _refresh(self) -> None:
        if self._path is not None and self._file_stamp() != self._stamp:
            try:
                self.reload()
            except ApproversFileError as exc:  # keep serving the last good file
                _log.warning("approvers file not reloaded: %s", exc)
                self._stamp = self._file_stamp()  # warn once per change, not per request

    def authenticate(self, token: str) -> Approver | None:
        self._refresh()
        digest = hash_token(token).encode()
        found: Approver | None = None
        for approver, stored in self._entries:
            if hmac.compare_digest(digest, stored) and found is None:
                found = approver
        return found

    def get(self, name: str) -> Approver | None:
        self._refresh()
        return next((a for a, _ in self._entries if a.name == name), None)

    def names(self) -> list[str]:
        self._refresh()
        return [a.name for a, _ in self._entries]


def approvers_add_command(
    file: Path, name: str, groups: list[str], db_users: list[str], out: TextIO
) -> int:
    """Add approver `name` to `file` (created if missing) and print their token once.

    Exit codes: 0 added, 1 the name exists already, 2 invalid name or unreadable file.
    """
    token = new_token()
    try:
        data = _read(file)
        if any(a.name == name for a in data.approvers):
            out.write(f"approver {name!r} already exists in {file}; remove it first\n")
            return 1
        entry = _ApproverEntry(
            name=name, groups=groups, db_users=db_users, token_sha256=hash_token(token)
        )
    except ApproversFileError as exc:
        out.write(f"{exc}\n")
        return 2
    except ValidationError:
        out.write(f"invalid approver name {name!r}: letters, digits, _ . @ - (max 64)\n")
        return 2
    data.approvers.append(entry)
    _write(file, data)
    out.write(
        f"Added approver {name!r} to {file}.\n"
        f"Token (shown only now; pgsentry stores only its hash):\n{token}\n"
    )
    return 0


def approvers_remove_command(file: Path, name: str, out: TextIO) -> int:
    """Remove approver `name` from `file`. Exit codes: 0 removed, 1 unknown, 2 bad file."""
    try:
        data = _read(file)
    except ApproversFileError as exc:
        out.write(f"{exc}\n")
        return 2
    kept = [a for a in data.approvers if a.name != name]
    if len(kept) == len(data.approvers):
        out.write(f"no approver named {name!r} in {file}\n")
        return 1
    _write(file, _ApproversFile(approvers=kept))
    out.write(f"Removed approver {name!r} from {file}.\n")
    return 0
