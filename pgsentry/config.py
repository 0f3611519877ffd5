"""Settings for `pgsentry run`: environment variables PGSENTRY_*, overridden by CLI flags.

Owns the settings model (pydantic-settings), its validation, and turning a
validation failure into one clear line naming the setting. Holds no business logic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]
MIN_POLICY_WATCH_SECONDS = 0.1  # a shorter interval only burns CPU re-reading the files
# The flag of a setting whose name is not "--" + the setting's name with dashes.
_FLAGS = {"webhook_urls": "--webhook-url"}


def parse_hostport(value: str, *, default_port: int | None = None) -> tuple[str, int]:
    """'127.0.0.1:6432' / '[::1]:6432' / ':6432' -> (host, port)."""
    host, sep, port_s = value.rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        host, port_s = value, str(default_port)
    host = host.strip("[]") or "0.0.0.0"
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_s!r}")
    return host, int(port_s)


def parse_upstream(value: str) -> tuple[str, int]:
    """'postgresql://HOST:PORT[/db][?host=/socket/dir]' -> (host or socket dir, port)."""
    parts = urlsplit(value)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"must be a postgresql://HOST:PORT URL, got {value!r}")
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise ValueError(f"bad port in {value!r}") from exc
    host = unquote(parts.hostname or "")
    for item in parts.query.split("&"):
        key, _, val = item.partition("=")
        if key == "host" and val:
            host = unquote(val)
    if not host:
        raise ValueError(f"no host in {value!r}")
    return host, port


class Settings(BaseSettings):
    """Every setting of `pgsentry run` (see the README's settings table)."""

    model_config = SettingsConfigDict(env_prefix="PGSENTRY_", extra="forbid", allow_inf_nan=False)

    listen: str = "127.0.0.1:6432"
    upstream: str = "postgresql://127.0.0.1:5432"
    policies: Path = Path("policies")
    audit_log: str = "-"
    admin_listen: str = "127.0.0.1:9187"  # empty string disables the admin listener
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_require: bool = False
    upstream_sslmode: SslMode = "prefer"
    upstream_ssl_ca_file: Path | None = None
    connect_timeout_seconds: float = Field(5.0, gt=0)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    policy_watch_seconds: float = Field(1.0, ge=0)  # 0: reload on SIGHUP only
    approvers_file: Path | None = None
    # NoDecode: the variable's JSON is read by `_urls`, so a bad one is a ValidationError
    webhook_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: str | None = None
    webhook_format: Literal["json", "slack"] = "json"
    public_url: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_hostport(v)
        return v

    @field_validator("admin_listen")
    @classmethod
    def _admin(cls, v: str) -> str:
        if v:
            parse_hostport(v)
        return v

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, v: str) -> str:
        parse_upstream(v)
        return v

    @field_validator("policies", mode="before")
    @classmethod
    def _policies_given(cls, v: object) -> object:
        if isinstance(v, str) and not v.strip():
            raise ValueError("must name a policy file or directory, not be empty")
        return v

    @field_validator("policy_watch_seconds")
    @classmethod
    def _watch(cls, v: float) -> float:
        if 0 < v < MIN_POLICY_WATCH_SECONDS:
            raise ValueError(f"must be 0 (SIGHUP only) or at least {MIN_POLICY_WATCH_SECONDS}")
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is not None:
            _check_http_url(v, "public url")
        return v

    @field_validator("policies")
    @classmethod
    def _policies(cls, v: Path) -> Path:
        if not v.exists():
            raise ValueError(f"no such file or directory: {v}")
        return v

    @field_validator("tls_cert_file", "tls_key_file", "upstream_ssl_ca_file", "approvers_file")
    @classmethod
    def _file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        if v is not None:
            from pgsentry.admin.signing import decode_secret

            decode_secret(v)
        return v

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _urls_json(cls, v: object) -> object:
        if not isinstance(v, str):
            return v
        try:
            return json.loads(v)
        except ValueError:
            raise ValueError(
                f'must be a JSON list such as ["https://host/hook"], got {v!r}'
            ) from None

    @field_validator("webhook_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            _check_http_url(url, "webhook url")
        return v

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        if self.tls_require and self.tls_cert_file is None:
            raise ValueError("tls_require needs tls_cert_file and tls_key_file")
        if self.upstream_sslmode in ("verify-ca", "verify-full") and not self.upstream_ssl_ca_file:
            raise ValueError(f"upstream_sslmode={self.upstream_sslmode} needs upstream_ssl_ca_file")
        if self.webhook_urls and self.webhook_format == "json" and not self.webhook_secret:
            raise ValueError("webhook_urls with webhook_format=json need webhook_secret")
        return self

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_hostport(self.listen)

    @property
    def admin_address(self) -> tuple[str, int] | None:
        return parse_hostport(self.admin_listen) if self.admin_listen else None

    @property
    def upstream_address(self) -> tuple[str, int]:
        return parse_upstream(self.upstream)


def _check_http_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be http(s)://host[:port]/..., got {url!r}")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `overrides` (the flags given).

    Raises ValueError with one line naming the setting when any value is bad."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ValueError(describe_error(exc)) from None
    except SettingsError as exc:  # a variable pydantic-settings could not even decode
        raise ValueError(f"invalid environment: {exc}") from None


def describe_error(exc: ValidationError) -> str:
    """One line naming the setting (flag and environment variable) and the problem."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ())]
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return f"invalid configuration: {msg}"
    name = loc[0]
    flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
    return f"invalid setting {flag} (PGSENTRY_{name.upper()}): {msg}"
