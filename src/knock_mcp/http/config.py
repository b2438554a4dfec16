"""The HTTP server's options, from flags or `KNOCK_MCP_*` variables, into one validated `HttpConfig`.

The rules that keep a deployment safe hold for both sources: no open server off loopback, a token
long enough not to be guessed, and the host names DNS-rebinding protection needs. This module
imports neither uvicorn nor starlette nor mcp, so `cli` reports a bad option before loading them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar, cast
from urllib.parse import urlsplit

from pydantic import SecretStr

from knock_mcp.http.auth_modes import AUTH_MODES, AuthMode
from knock_mcp.logs import LOG_LEVELS, LogLevel
from knock_mcp.oauth.config import OAuthConfig, load_oauth_config
from knock_mcp.options import (
    OptionReader,
    is_header_safe,
    parse_switch,
    seconds_between,
    whole_number_between,
)
from knock_mcp.settings import is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# A call may take up to its deadline (KNOCK_MCP_CALL_DEADLINE, 50 s by default); a minute lets one
# that began just before SIGTERM finish and its answer travel back.
DEFAULT_SHUTDOWN_TIMEOUT = 60.0
# A shared token is only as strong as it is long: 32 characters of token_urlsafe carry 192 bits.
MIN_AUTH_TOKEN_LENGTH = 32
AUTH_TOKEN_VARIABLE = "KNOCK_MCP_AUTH_TOKEN"
_HOST_PATTERN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(:(\d{1,5}|\*))?")
_ORIGIN_PATTERN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(:(\d{1,5}|\*))?")
_T = TypeVar("_T")
_GENERATE_TOKEN = "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


@dataclass(frozen=True)
class HttpConfig:
    """Validated options of the HTTP server, whether they came from flags or the environment."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    auth: AuthMode = "none"
    auth_token: SecretStr | None = None
    oauth: OAuthConfig | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    demo: bool = False
    log_level: LogLevel = "WARNING"
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT


@dataclass(frozen=True)
class HttpFlags:
    """What the command line said; None or empty where it said nothing, so the environment decides."""

    host: str | None = None
    port: str | None = None
    auth: str | None = None
    allowed_hosts: Sequence[str] = ()
    allowed_origins: Sequence[str] = ()
    demo: bool = False
    log_level: str | None = None
    shutdown_timeout: str | None = None


# Flag and environment variable of each option, as error messages name them.
OPTIONS = {
    "host": ("--host", "KNOCK_MCP_HOST"),
    "port": ("--port", "KNOCK_MCP_PORT"),
    "auth": ("--auth", "KNOCK_MCP_AUTH"),
    "allowed_hosts": ("--allowed-host", "KNOCK_MCP_ALLOWED_HOSTS"),
    "allowed_origins": ("--allowed-origin", "KNOCK_MCP_ALLOWED_ORIGINS"),
    "demo": ("--demo", "KNOCK_MCP_DEMO"),
    "log_level": ("--log-level", "KNOCK_MCP_LOG_LEVEL"),
    "shutdown_timeout": ("--shutdown-timeout", "KNOCK_MCP_SHUTDOWN_TIMEOUT"),
}


def load_http_config(environ: Mapping[str, str], flags: HttpFlags | None = None) -> HttpConfig:
    """Flags win over `KNOCK_MCP_*` variables; raise `ConfigurationError` naming every bad option at once."""
    options = OptionReader(environ, _given_flags(flags or HttpFlags()))

    def option(name: str, parse: Callable[[str], _T], default: _T) -> _T:
        flag, variable = OPTIONS[name]
        return options.read(variable, parse, default, flag=flag)

    config = HttpConfig(
        host=option("host", _parse_host, DEFAULT_HOST),
        port=option("port", whole_number_between(1, 65535, kind="a TCP port"), DEFAULT_PORT),
        auth=option("auth", _parse_auth, "none"),
        allowed_hosts=option("allowed_hosts", _parse_list(_parse_allowed_host), ()),
        allowed_origins=option("allowed_origins", _parse_list(_parse_allowed_origin), ()),
        demo=option("demo", parse_switch, False),
        log_level=option("log_level", _parse_log_level, "WARNING"),
        shutdown_timeout=option("shutdown_timeout", seconds_between(1, 3600), DEFAULT_SHUTDOWN_TIMEOUT),
    )
    token = _shared_token(config, environ.get(AUTH_TOKEN_VARIABLE, ""), options)
    if config.auth == "oauth":
        oauth = load_oauth_config(options)
        if oauth is not None:
            # Clients reach this server by its public URL's name: DNS-rebinding protection allows it.
            public_host = urlsplit(oauth.resource).netloc
            config = replace(config, oauth=oauth, allowed_hosts=(*config.allowed_hosts, public_host))
    _check_exposure(config, options)
    options.check()
    return replace(config, auth_token=token)


def _given_flags(flags: HttpFlags) -> dict[str, str]:
    """The flags the command line gave, as text (a repeated flag joined with commas)."""
    given: dict[str, str] = {}
    for name, (flag, _) in OPTIONS.items():
        value = getattr(flags, name)
        if value is None or value == () or value is False:
            continue
        given[flag] = (
            ",".join(value) if isinstance(value, Sequence) and not isinstance(value, str) else str(value)
        )
    return given


def _shared_token(config: HttpConfig, token: str, options: OptionReader) -> SecretStr | None:
    """The token callers must send with --auth token; problems if it is missing, weak, or set for nothing."""
    auth = options.label(OPTIONS["auth"][1])
    if config.auth != "token":
        if token:
            options.problems.append(
                f"{AUTH_TOKEN_VARIABLE} is set but {auth} is {config.auth}, so nothing would check it: "
                f"use --auth token (or {OPTIONS['auth'][1]}=token) to require it, or unset it"
            )
        return None
    if not token:
        options.problems.append(
            f"{AUTH_TOKEN_VARIABLE} must be set when {auth} is token: callers then send it as "
            f"`Authorization: Bearer <token>`. Generate one with {_GENERATE_TOKEN}"
        )
        return None
    if len(token) < MIN_AUTH_TOKEN_LENGTH or not is_header_safe(token):
        # Never echo the token: say only what is wrong with it.
        options.problems.append(
            f"{AUTH_TOKEN_VARIABLE} must be at least {MIN_AUTH_TOKEN_LENGTH} characters of printable "
            f"ASCII without spaces, so that it cannot be guessed; generate one with {_GENERATE_TOKEN}"
        )
        return None
    return SecretStr(token)


def _check_exposure(config: HttpConfig, options: OptionReader) -> None:
    """No server without authentication that other machines can reach, and no public server without
    the host names that DNS-rebinding protection lets through."""
    auth, host = options.label(OPTIONS["auth"][1]), options.label(OPTIONS["host"][1])
    allowed_hosts = options.label(OPTIONS["allowed_hosts"][1])
    if config.auth == "none" and is_loopback(config.host):
        # Behind a reverse proxy that forwards a public name to loopback, the host alone looks safe.
        public = [name for name in config.allowed_hosts if not _allows_only_loopback(name)]
        if public:
            options.problems.append(
                f"{auth} is none but {allowed_hosts} lets clients reach this server as "
                f"{', '.join(public)}: anyone who can reach that name could use this server and its Knock "
                "key. Use --auth token, knock-key or oauth"
            )
    if not is_loopback(config.host):
        if config.auth == "none":
            options.problems.append(
                f"{auth} is none but {host} is {config.host!r}, which other machines can "
                "reach: anyone there could use this server and its Knock key. Use --auth token, "
                "knock-key or oauth, or serve on 127.0.0.1"
            )
        if not config.allowed_hosts:
            options.problems.append(
                f"{host} is {config.host!r}, so DNS-rebinding protection needs the host names "
                "clients use to reach it: pass --allowed-host mcp.example.com (repeatable, with :port if "
                f"not 80/443) or set {OPTIONS['allowed_hosts'][1]}"
            )


def _parse_host(raw: str) -> str:
    if not _HOST_PATTERN.fullmatch(raw) and not _is_ip_address(raw):
        raise ValueError(f"must be an IP address or host name to listen on, such as 127.0.0.1, not {raw!r}")
    return raw


def _is_ip_address(raw: str) -> bool:
    try:
        ipaddress.ip_address(raw.strip("[]"))
    except ValueError:
        return False
    return True


def _parse_auth(raw: str) -> AuthMode:
    if raw not in AUTH_MODES:
        raise ValueError(f"must be one of {', '.join(AUTH_MODES)}, not {raw!r}")
    return raw


def _allows_only_loopback(allowed_host: str) -> bool:
    """Whether an --allowed-host value (already validated) names this machine only."""
    match = _HOST_PATTERN.fullmatch(allowed_host)
    return match is not None and is_loopback(match.group(1))


def _parse_allowed_host(raw: str) -> str:
    if not _HOST_PATTERN.fullmatch(raw):
        raise ValueError(
            f"must list Host header values such as mcp.example.com or mcp.example.com:8443 "
            f"(no scheme, no path; host:* allows any port), not {raw!r}"
        )
    return raw


def _parse_allowed_origin(raw: str) -> str:
    if not _ORIGIN_PATTERN.fullmatch(raw):
        raise ValueError(
            f"must list browser origins such as https://app.example.com (scheme and host, optional "
            f":port or :*, no path), not {raw!r}"
        )
    return raw


def _parse_list(parse_one: Callable[[str], str]) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        return tuple(parse_one(item.strip()) for item in raw.split(",") if item.strip())

    return parse


def _parse_log_level(raw: str) -> LogLevel:
    if raw.upper() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(level.lower() for level in LOG_LEVELS)}, not {raw!r}")
    return cast(LogLevel, raw.upper())
