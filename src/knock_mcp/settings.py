"""Configuration, read from the environment in one place, like Knock's own SDKs.

Every bad variable is reported at once, each by name. A missing key is not a configuration error:
the server still starts (so it does not vanish from a chat client) and each call explains how to
set the key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

import httpx2
from pydantic import SecretStr

from knock_mcp.options import OptionReader, is_header_safe, seconds_between, whole_number_between

DEFAULT_BASE_URL = "https://api.knock.app"
# A GET by id is a small read. 15 s per attempt (Knock's SDKs use 60 s) lets
# the first try and both retries fit inside one tool call's deadline, so one stalled connection
# cannot use up the whole call.
DEFAULT_ATTEMPT_TIMEOUT = 15.0
DEFAULT_MAX_RETRIES = 2
# Chat clients commonly abandon a tool call after about 60 s; ending ours by 50 s leaves room for
# the answer to travel back and be read.
DEFAULT_CALL_DEADLINE = 50.0

_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class Settings:
    """Validated configuration for talking to Knock."""

    api_key: SecretStr | None
    base_url: str = DEFAULT_BASE_URL
    branch: str | None = None
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    call_deadline: float = DEFAULT_CALL_DEADLINE


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read `KNOCK_*` variables; raise `ConfigurationError` naming every unusable one."""
    options = OptionReader(environ)
    settings = Settings(
        api_key=options.read("KNOCK_API_KEY", _parse_api_key, None),
        base_url=options.read("KNOCK_BASE_URL", _parse_base_url, DEFAULT_BASE_URL),
        branch=options.read("KNOCK_BRANCH", _parse_branch, None),
        attempt_timeout=options.read("KNOCK_TIMEOUT", seconds_between(0.1, 300), DEFAULT_ATTEMPT_TIMEOUT),
        max_retries=options.read("KNOCK_MAX_RETRIES", whole_number_between(0, 10), DEFAULT_MAX_RETRIES),
        call_deadline=options.read(
            "KNOCK_MCP_CALL_DEADLINE", seconds_between(1, 3600), DEFAULT_CALL_DEADLINE
        ),
    )
    options.check()
    return settings


def _parse_api_key(raw: str) -> SecretStr:
    if raw.startswith("pk_"):
        raise ValueError(
            "holds a public key (pk_...), which cannot read bulk operations: set it to a secret key "
            "(sk_...) from the Knock dashboard, Platform > API keys"
        )
    if not is_header_safe(raw):
        # Never echo the key: say only what kind of character is wrong.
        raise ValueError(
            "contains spaces, line breaks or characters that are not plain ASCII (often an invisible "
            "character picked up when copying): paste the secret key (sk_...) alone"
        )
    return SecretStr(raw)


def _parse_branch(raw: str) -> str:
    if not is_header_safe(raw):
        raise ValueError(f"must be a branch slug of plain ASCII letters, digits and dashes, not {raw!r}")
    return raw


def _parse_base_url(raw: str) -> str:
    problem = (
        f"must be an http(s) URL such as {DEFAULT_BASE_URL}; plain http is allowed only for "
        "localhost, so the secret key is never sent unencrypted"
    )
    try:
        url = httpx2.URL(raw)
    except httpx2.InvalidURL:
        raise ValueError(problem) from None
    if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise ValueError(problem)
    if url.userinfo:
        raise ValueError("must not contain a user name or password")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError(f"has port {url.port}, which is not a TCP port (1 to 65535)")
    if url.scheme == "http" and not is_loopback(url.host):
        raise ValueError(problem)
    return raw.rstrip("/")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an IP address, IPv6 with or without brackets) stays on this machine."""
    host = host.removeprefix("[").removesuffix("]")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
