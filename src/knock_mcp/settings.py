"""Configuration, read from the environment in one place, like Knock's own SDKs.

Every bad variable is reported at once, each by name. A missing key is not a configuration error:
the server still starts (so it does not vanish from a chat client) and each call explains how to
set the key.
"""

from __future__ import annotations

import importlib.util
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
# Half of what Knock allows on GET /v1/bulk_operations/{id} (rate-limit tier 4: 200 requests/second
# per environment), leaving the rest to the application that owns the key.
DEFAULT_REQUESTS_PER_SECOND = 100
# The fleet secret keys an HMAC: shorter secrets are guessable enough to turn fingerprints back into keys.
MIN_FLEET_SECRET_CHARS = 32
REDIS_URL_SCHEMES = ("redis", "rediss", "unix")

_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class FleetSettings:
    """Where the fleet of knock-mcp processes shares its cache, poll loops and request budget.

    The URL may carry Redis's password, so both it and the secret are kept out of every log."""

    redis_url: SecretStr
    secret: SecretStr
    requests_per_second: int = DEFAULT_REQUESTS_PER_SECOND


@dataclass(frozen=True)
class Settings:
    """Validated configuration for talking to Knock."""

    api_key: SecretStr | None
    base_url: str = DEFAULT_BASE_URL
    branch: str | None = None
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    call_deadline: float = DEFAULT_CALL_DEADLINE
    # None: every process works alone, as without Redis.
    fleet: FleetSettings | None = None


def load_settings(environ: Mapping[str, str], *, fleet: bool = False) -> Settings:
    """Read `KNOCK_*` variables; raise `ConfigurationError` naming every unusable one.

    With `fleet` (serving HTTP, where replicas and workers may share through Redis), also the
    `KNOCK_MCP_REDIS_URL` family; a stdio server is one process per client and never shares."""
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
        fleet=_fleet_settings(options) if fleet else None,
    )
    options.check()
    return settings


def _fleet_settings(options: OptionReader) -> FleetSettings | None:
    redis_url = options.read("KNOCK_MCP_REDIS_URL", _parse_redis_url, None)
    if redis_url is None:
        return None
    if importlib.util.find_spec("redis") is None:
        options.problems.append(
            "KNOCK_MCP_REDIS_URL is set, but the Redis client is not installed: install knock-mcp with "
            "pip install 'knock-mcp[redis]' (or unset KNOCK_MCP_REDIS_URL to run each process alone)"
        )
    problems_before = len(options.problems)
    secret = options.read("KNOCK_MCP_FLEET_SECRET", _parse_fleet_secret, None)
    if secret is None:
        if len(options.problems) > problems_before:
            return None  # too short: already said
        options.problems.append(
            f"KNOCK_MCP_FLEET_SECRET must be set, to at least {MIN_FLEET_SECRET_CHARS} characters, when "
            "KNOCK_MCP_REDIS_URL is set"
        )
        return None
    budget = options.read(
        "KNOCK_MCP_REQUESTS_PER_SECOND",
        whole_number_between(1, 10_000, kind="a number of requests per second"),
        DEFAULT_REQUESTS_PER_SECOND,
    )
    return FleetSettings(redis_url, secret, budget)


def _parse_redis_url(raw: str) -> SecretStr:
    scheme = raw.partition("://")[0]
    if scheme not in REDIS_URL_SCHEMES:
        # The URL may hold a password: name its scheme only.
        raise ValueError(f"must start with redis://, rediss:// (TLS) or unix://, not {scheme!r}")
    return SecretStr(raw)


def _parse_fleet_secret(raw: str) -> SecretStr:
    if len(raw) < MIN_FLEET_SECRET_CHARS:
        # Never echo the secret, not even a short one.
        raise ValueError(
            f"must be at least {MIN_FLEET_SECRET_CHARS} characters, and the same in every process of "
            "the fleet (for example the output of `openssl rand -hex 32`)"
        )
    return SecretStr(raw)


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
