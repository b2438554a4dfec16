"""knock-mcp over Streamable HTTP: options, caller authentication, a health check and a graceful drain.

    knock-mcp --transport http [--host H] [--port P] [--auth none|token|knock-key] ...
    uvicorn --factory knock_mcp.http:create_app --workers 4     (options from KNOCK_MCP_* variables)

MCP is served at /mcp in the SDK's stateless mode, so any replica can answer any request, and
responses stream as SSE so that progress reaches the caller and a disconnect cancels the call.
Options come from flags or environment variables through one validated `HttpConfig`; the rules that
keep a deployment safe (no open server off loopback, DNS-rebinding protection) hold for both.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from types import FrameType
from typing import Any, Literal, TypeVar, cast, get_args

import anyio
import anyio.abc
import h11
import uvicorn
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import ListenHandler
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import SecretStr
from sse_starlette.sse import AppStatus
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from knock_mcp import __version__
from knock_mcp.demo import DEMO_BASE_URL, DemoKnock, demo_instructions
from knock_mcp.errors import ConfigurationError
from knock_mcp.server import KeySource, LogLevel, ServerState, create_server
from knock_mcp.settings import Settings, is_loopback, load_settings

logger = logging.getLogger(__name__)

AuthMode = Literal["none", "token", "knock-key"]
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# A call may take up to its deadline (KNOCK_MCP_CALL_DEADLINE, 50 s by default); a minute lets one
# that began just before SIGTERM finish and its answer travel back.
DEFAULT_SHUTDOWN_TIMEOUT = 60.0
# Listen streams carry no work in progress: after this grace (time for events already queued to be
# delivered) they are closed gracefully, so their clients re-listen on a replica that is staying up.
LISTEN_GRACE_SECONDS = 5.0
# The largest request a client sends here is a tool call with an id and its `_meta` (client info
# and capabilities): a few KB. The SDK's 4 MiB default would let a thousand concurrent uploads pin
# 4 GB; 64 KiB leaves a tenfold margin over any real request and bounds that to 64 MB.
MAX_REQUEST_BODY_BYTES = 64 * 1024
# A request (headers and its body of at most 64 KiB) must arrive whole within this many seconds of
# the connection opening or of the previous answer. uvicorn has no such limit: without it a client
# that sends half a request and stops (slowloris) holds a connection and a descriptor for ever.
REQUEST_ARRIVAL_TIMEOUT = 10.0
# A shared token is only as strong as it is long: 32 characters of token_urlsafe carry 192 bits.
MIN_AUTH_TOKEN_LENGTH = 32
_LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
_LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
# Knock secret keys are `sk_` followed by letters, digits, `_` and `-`; anything else is refused
# before it is ever sent to Knock.
_PLAUSIBLE_SECRET_KEY = re.compile(r"sk_[A-Za-z0-9_.\-]{8,500}")
_HOST_PATTERN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(:(\d{1,5}|\*))?")
_ORIGIN_PATTERN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(:(\d{1,5}|\*))?")

LOG_FORMAT = "knock-mcp %(levelname)s %(name)s: %(message)s"

_T = TypeVar("_T")


@dataclass(frozen=True)
class HttpConfig:
    """Validated options of the HTTP server, whether they came from flags or the environment."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    auth: AuthMode = "none"
    auth_token: SecretStr | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    demo: bool = False
    log_level: LogLevel = "WARNING"
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT

    def transport_security(self) -> TransportSecuritySettings:
        """Host and Origin checks: loopback names always, plus the names the operator allowed."""
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[*_LOOPBACK_HOSTS, *self.allowed_hosts],
            allowed_origins=[*_LOOPBACK_ORIGINS, *self.allowed_origins],
        )


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
_SOURCES = {
    "host": ("--host", "KNOCK_MCP_HOST"),
    "port": ("--port", "KNOCK_MCP_PORT"),
    "auth": ("--auth", "KNOCK_MCP_AUTH"),
    "allowed_hosts": ("--allowed-host", "KNOCK_MCP_ALLOWED_HOSTS"),
    "allowed_origins": ("--allowed-origin", "KNOCK_MCP_ALLOWED_ORIGINS"),
    "demo": ("--demo", "KNOCK_MCP_DEMO"),
    "log_level": ("--log-level", "KNOCK_MCP_LOG_LEVEL"),
    "shutdown_timeout": ("--shutdown-timeout", "KNOCK_MCP_SHUTDOWN_TIMEOUT"),
}
AUTH_TOKEN_VARIABLE = "KNOCK_MCP_AUTH_TOKEN"


def load_http_config(environ: Mapping[str, str], flags: HttpFlags | None = None) -> HttpConfig:
    """Flags win over `KNOCK_MCP_*` variables; raise `ConfigurationError` naming every bad option at once."""
    flags = flags or HttpFlags()
    problems: list[str] = []
    labels: dict[str, str] = {}

    def raw(name: str) -> str | None:
        flag, variable = _SOURCES[name]
        given = getattr(flags, name)
        if given is not None and given != () and given is not False:
            labels[name] = flag
            return (
                ",".join(given) if isinstance(given, Sequence) and not isinstance(given, str) else str(given)
            )
        value = environ.get(variable, "").strip()
        labels[name] = variable
        return value or None

    def read(name: str, parse: Callable[[str], _T], default: _T) -> _T:
        value = raw(name)
        if value is None:
            labels[name] = "{} (or {})".format(*_SOURCES[name])
            return default
        try:
            return parse(value)
        except ValueError as error:
            problems.append(f"{labels[name]} {error}")
            return default

    config = HttpConfig(
        host=read("host", _parse_host, DEFAULT_HOST),
        port=read("port", _parse_port, DEFAULT_PORT),
        auth=read("auth", _parse_auth, "none"),
        auth_token=None,
        allowed_hosts=read("allowed_hosts", _parse_list(_parse_allowed_host), ()),
        allowed_origins=read("allowed_origins", _parse_list(_parse_allowed_origin), ()),
        demo=True if flags.demo else read("demo", _parse_switch, False),
        log_level=read("log_level", _parse_log_level, "WARNING"),
        shutdown_timeout=read("shutdown_timeout", _parse_seconds, DEFAULT_SHUTDOWN_TIMEOUT),
    )
    token = environ.get(AUTH_TOKEN_VARIABLE, "")
    if config.auth == "token":
        if not token:
            problems.append(
                f"{AUTH_TOKEN_VARIABLE} must be set when {labels['auth']} is token: callers then send it as "
                "`Authorization: Bearer <token>`. Generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        elif len(token) < MIN_AUTH_TOKEN_LENGTH or not _is_header_safe(token):
            # Never echo the token: say only what is wrong with it.
            problems.append(
                f"{AUTH_TOKEN_VARIABLE} must be at least {MIN_AUTH_TOKEN_LENGTH} characters of printable "
                "ASCII without spaces, so that it cannot be guessed; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        else:
            config = replace(config, auth_token=SecretStr(token))
    elif token:
        problems.append(
            f"{AUTH_TOKEN_VARIABLE} is set but {labels['auth']} is {config.auth}, so nothing would check it: "
            f"use --auth token (or {_SOURCES['auth'][1]}=token) to require it, or unset it"
        )
    if config.auth == "none" and is_loopback(config.host):
        # Behind a reverse proxy that forwards a public name to loopback, the host alone looks safe.
        public = [host for host in config.allowed_hosts if not _allows_only_loopback(host)]
        if public:
            problems.append(
                f"{labels['auth']} is none but {labels['allowed_hosts']} lets clients reach this server as "
                f"{', '.join(public)}: anyone who can reach that name could use this server and its Knock "
                "key. Use --auth token or --auth knock-key"
            )
    if not is_loopback(config.host):
        if config.auth == "none":
            problems.append(
                f"{labels['auth']} is none but {labels['host']} is {config.host!r}, which other machines can "
                "reach: anyone there could use this server and its Knock key. Use --auth token or "
                "--auth knock-key, or serve on 127.0.0.1"
            )
        if not config.allowed_hosts:
            problems.append(
                f"{labels['host']} is {config.host!r}, so DNS-rebinding protection needs the host names "
                "clients use to reach it: pass --allowed-host mcp.example.com (repeatable, with :port if "
                f"not 80/443) or set {_SOURCES['allowed_hosts'][1]}"
            )
    if problems:
        raise ConfigurationError(problems)
    return config


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


def _parse_port(raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"must be a TCP port from 1 to 65535, not {raw!r}")
    return int(raw)


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


def _parse_switch(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be 1, true, yes or on (or 0, false, no, off), not {raw!r}")


def _parse_log_level(raw: str) -> LogLevel:
    if raw.upper() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(level.lower() for level in LOG_LEVELS)}, not {raw!r}")
    return cast("LogLevel", raw.upper())


def _parse_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 3600:
        raise ValueError(f"must be a number of seconds from 1 to 3600, not {raw!r}")
    return value


def _is_header_safe(raw: str) -> bool:
    return raw.isascii() and raw.isprintable() and not any(character.isspace() for character in raw)


def caller_key() -> SecretStr | None:
    """The Knock key of the request being served, in `--auth knock-key` mode: the caller's bearer token."""
    token = get_access_token()
    return SecretStr(token.token) if token is not None else None


def build_app(config: HttpConfig, environ: Mapping[str, str]) -> KnockMcpApp:
    """The HTTP app and the MCP server behind it; raises `ConfigurationError` naming every unusable variable.

    Unlike stdio, where the server starts anyway so it does not vanish from a chat client, a
    deployment with a bad setting should fail at once, where its operator looks.
    """
    key_source: KeySource | None = caller_key if config.auth == "knock-key" else None
    if config.demo:
        # The demo never reads KNOCK_API_KEY: a real key is never touched by a simulated Knock.
        settings = Settings(api_key=SecretStr("sk_demo"), base_url=DEMO_BASE_URL)
        server = create_server(
            settings,
            transport=DemoKnock().transport(),
            api_key=key_source,
            extra_instructions=demo_instructions(),
            cache_final_operations=False,
            log_level=config.log_level,
        )
        return KnockMcpApp(server, config, knock_key_configured=True)
    settings = load_settings(environ)
    if config.auth == "knock-key":
        if settings.api_key is not None:
            logger.warning(
                "KNOCK_API_KEY is set but ignored: with --auth knock-key every request uses its caller's "
                "own key. Unset it so that this server holds no key."
            )
        settings = replace(settings, api_key=None)
    elif settings.api_key is None:
        logger.warning(
            "KNOCK_API_KEY is not set: the server is running, but every tool call will explain how to "
            "set it. Use --auth knock-key to have each caller send their own key, or --demo to try it."
        )
    server = create_server(settings, api_key=key_source, log_level=config.log_level)
    return KnockMcpApp(server, config, knock_key_configured=settings.api_key is not None)


def create_app() -> KnockMcpApp:
    """ASGI application factory for `uvicorn --factory knock_mcp.http:create_app` (or gunicorn).

    The factory cannot see uvicorn's own `--host`, so it reads everything from `KNOCK_MCP_*` and
    `KNOCK_*` variables; a bad one stops the worker with a message naming it, not a traceback.
    """
    try:
        config = load_http_config(os.environ)
        logging.basicConfig(level=config.log_level, stream=sys.stderr, format=LOG_FORMAT)
        app = build_app(config, os.environ)
    except ConfigurationError as error:
        print(f"knock-mcp: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    set_nodelay_on_inherited_sockets()
    # As the command line does: keep the objects created by imports out of every full collection.
    gc.freeze()
    return app


def set_nodelay_on_inherited_sockets() -> None:
    """Turn Nagle's algorithm off on the listening socket a uvicorn worker inherited.

    `uvicorn --workers N` binds its socket as `socket.socket(family)`, whose protocol number is 0,
    and asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP. So every connection a worker
    accepts keeps Nagle's algorithm on, and each response (headers, then body: two writes) waits
    ~40 ms for the client's delayed ACK: measured p50 48 ms per call with two workers against 1.9 ms
    with one. Linux copies TCP_NODELAY from a listening socket to the connections it accepts, so
    setting it once here fixes all of them. Elsewhere (no /proc, or no such socket) it does nothing.
    """
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return
    for descriptor in descriptors:
        try:
            candidate = socket.socket(fileno=int(descriptor))
        except (OSError, ValueError):
            continue  # not a socket, or the directory listing's own descriptor, closed since
        try:
            if candidate.family in (socket.AF_INET, socket.AF_INET6) and candidate.type == socket.SOCK_STREAM:
                candidate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        finally:
            candidate.detach()  # the descriptor stays uvicorn's


def serve(app: KnockMcpApp, config: HttpConfig) -> None:
    """Run one uvicorn worker: no access log (a log line per request costs throughput and could
    record what a caller sent), and a shutdown bound just past the app's own drain."""
    uvicorn_config = uvicorn.Config(
        app,
        host=config.host.strip("[]"),
        port=config.port,
        log_level=config.log_level.lower(),
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=int(config.shutdown_timeout) + 5,
        http=RequestArrivalDeadline,
    )
    uvicorn.Server(uvicorn_config).run()


class RequestArrivalDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline for each request to arrive whole.

    A connection still waiting for (part of) a request `REQUEST_ARRIVAL_TIMEOUT` seconds after it
    opened, or after its previous answer, gets 408 and is closed; a request that is still being
    answered (a long tool call, a listen stream) is not affected. Under `uvicorn --factory`, pass
    `--http knock_mcp.http:RequestArrivalDeadline` for the same protection.
    """

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(REQUEST_ARRIVAL_TIMEOUT, self._on_deadline)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        waiting_for_request = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if self.transport.is_closing() or not waiting_for_request:
            return
        if self.conn.our_state is h11.IDLE:
            # h11 cannot frame an answer to a request it has not parsed; the connection closes next.
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                b"content-length: 37\r\n\r\nThe request did not arrive in time.\r\n"
            )
        self.transport.close()


class KnockMcpApp:
    """The ASGI application: `/mcp` behind authentication and the drain, `/healthz`, and a lifespan
    that runs the SDK's session manager and turns SIGTERM into a graceful drain."""

    def __init__(
        self, server: MCPServer[ServerState], config: HttpConfig, *, knock_key_configured: bool
    ) -> None:
        # Built for its session manager, which serves /mcp below; its Starlette router is not used,
        # so that /healthz, the drain and authentication sit in front of it at no routing cost.
        server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            json_response=False,
            stateless_http=True,
            max_request_body_size=MAX_REQUEST_BODY_BYTES,
            transport_security=config.transport_security(),
            host=config.host,
        )
        self._session_manager = server.session_manager
        self._mcp = AuthContextMiddleware(self._session_manager.handle_request)
        self._authenticate = _authenticator(config)
        self._warned_open_server = False
        self._drain = Drain(config.shutdown_timeout, _listen_closer(server))
        self._security = config.transport_security()
        # For load balancers and operators: nothing in it is secret, and it is the same for every caller.
        self._health: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "knock_key_configured": knock_key_configured,
            "knock_key_source": "caller" if config.auth == "knock-key" else "server",
        }
        # The SDK's SSE responses for 2025-11-25 calls (sse-starlette's EventSourceResponse) end
        # themselves as soon as uvicorn sees SIGTERM, cutting calls in flight. This app drains
        # instead, and ends what is left itself once its grace is over.
        AppStatus.enable_automatic_graceful_drain = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
        elif scope["path"] == MCP_PATH:
            await self._serve_mcp(scope, receive, send)
        elif scope["path"] == HEALTH_PATH:
            await self._serve_health(scope, send)
        else:
            await _respond(
                send, 404, {"error": f"not found: knock-mcp serves MCP at {MCP_PATH} and {HEALTH_PATH}"}
            )

    async def _serve_mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._drain.started:
            await _respond(
                send,
                503,
                _jsonrpc_error(
                    "knock-mcp is shutting down: send the request again (another replica answers)"
                ),
                [(b"retry-after", b"1"), (b"connection", b"close")],
            )
            return
        refusal = _check_host_and_origin(scope, self._security)
        if refusal is not None:
            await _respond(send, *refusal)
            return
        if self._authenticate is None and not _arrived_on_loopback(scope):
            await _respond(send, 403, _jsonrpc_error(_OPEN_SERVER_REACHED_FROM_OUTSIDE))
            if not self._warned_open_server:
                self._warned_open_server = True
                logger.error(
                    "Refused a request that arrived on %s: with --auth none knock-mcp serves only "
                    "loopback. Set KNOCK_MCP_HOST to the address uvicorn listens on, and --auth token "
                    "or knock-key.",
                    scope["server"][0],
                )
            return
        if scope["method"] == "GET":
            # Stateless: there is no session for a standalone stream to belong to, so nothing could
            # ever be sent on one; the spec's answer is 405, and no idle stream holds up a shutdown.
            await _respond(
                send,
                405,
                _jsonrpc_error("knock-mcp is stateless: send MCP requests to /mcp as POST"),
                [(b"allow", b"POST")],
            )
            return
        if self._authenticate is not None:
            user = self._authenticate(_bearer_token(scope))
            if isinstance(user, _Refusal):
                await _respond(send, 401, user.body(), [(b"www-authenticate", user.challenge().encode())])
                return
            scope = {**scope, "user": user}
        with self._drain.track():
            try:
                await self._mcp(scope, receive, send)
            except ClientDisconnect:
                # The client left before its request had arrived whole (or was cut off for being too
                # slow, see RequestArrivalDeadline): there is no one to answer, and nothing went wrong here.
                logger.debug("A client disconnected before its request arrived whole.")

    async def _serve_health(self, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, {"error": "GET /healthz"}, [(b"allow", b"GET, HEAD")])
            return
        body = {**self._health, "status": "draining"} if self._drain.started else self._health
        # A draining replica answers 503 so that load balancers stop sending it new requests.
        await _respond(send, 503 if self._drain.started else 200, body, head=scope["method"] == "HEAD")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self._session_manager.run())
                tasks = await stack.enter_async_context(anyio.create_task_group())
                self._drain.start(tasks)
                stack.callback(tasks.cancel_scope.cancel)
            except Exception as error:
                logger.exception("knock-mcp could not start")
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


@dataclass
class Drain:
    """Graceful shutdown. On SIGTERM (or SIGINT): new MCP requests get 503 and /healthz says
    draining; open listen streams are closed after `LISTEN_GRACE_SECONDS`; calls in flight run to
    completion, and whatever still runs after `timeout` seconds is cancelled. Uvicorn meanwhile
    stops accepting connections and waits for these requests to end."""

    timeout: float
    close_listeners: Callable[[], None]
    started: bool = False
    _in_flight: set[anyio.CancelScope] = field(default_factory=set)
    _requested: anyio.Event = field(default_factory=anyio.Event)
    _idle: anyio.Event = field(default_factory=anyio.Event)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Around one request, so that the drain knows when none is left and can end stragglers."""
        scope = anyio.CancelScope()
        self._in_flight.add(scope)
        try:
            with scope:
                yield
        finally:
            self._in_flight.discard(scope)
            if self.started and not self._in_flight:
                self._idle.set()

    def start(self, tasks: anyio.abc.TaskGroup) -> None:
        """Chain onto the server's signal handlers and wait, in `tasks`, for one to fire."""
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                _chain_signal(signum, partial(loop.call_soon_threadsafe, self._requested.set))
        tasks.start_soon(self._run)

    async def _run(self) -> None:
        await self._requested.wait()
        self.started = True
        # A short shutdown timeout still leaves half of it for listeners to be closed gracefully.
        listen_grace = min(LISTEN_GRACE_SECONDS, self.timeout / 2)
        logger.warning(
            "Shutting down: refusing new requests; %d in flight may run for up to %g s; listen streams "
            "close in %g s.",
            len(self._in_flight),
            self.timeout,
            listen_grace,
        )
        if not self._in_flight:
            self._idle.set()
        with anyio.move_on_after(listen_grace):
            await self._idle.wait()
        self.close_listeners()
        with anyio.move_on_after(self.timeout - listen_grace):
            await self._idle.wait()
        if self._in_flight:
            logger.warning(
                "Cancelling %d request(s) still running after %g s.", len(self._in_flight), self.timeout
            )
            for scope in list(self._in_flight):
                scope.cancel()


def _chain_signal(signum: int, notify: Callable[[], object]) -> None:
    """Run `notify` and then whatever handled `signum` before (uvicorn's own, which starts its shutdown)."""
    previous = signal.getsignal(signum)

    def handle(received: int, frame: FrameType | None) -> None:
        notify()
        if callable(previous):
            previous(received, frame)

    signal.signal(signum, handle)


def _listen_closer(server: MCPServer[ServerState]) -> Callable[[], None]:
    """Closes every open `subscriptions/listen` stream gracefully (each gets its final result)."""
    entry = server.session_manager.app.get_request_handler("subscriptions/listen")
    handler = entry.handler if entry is not None else None
    if isinstance(handler, ListenHandler):
        return handler.close
    return lambda: None


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


@dataclass(frozen=True)
class _Refusal:
    """Why a caller's credentials were refused: the 401's description, which never repeats them."""

    description: str
    error: str | None = "invalid_token"

    def challenge(self) -> str:
        # RFC 6750: a request with no credentials gets the challenge without an error code.
        parts = ['realm="knock-mcp"']
        if self.error:
            parts.append(f'error="{self.error}"')
        parts.append(f'error_description="{self.description}"')
        return "Bearer " + ", ".join(parts)

    def body(self) -> dict[str, Any]:
        return {"error": self.error or "unauthorized", "error_description": self.description}


Authenticator = Callable[[str | None], AuthenticatedUser | _Refusal]


def _authenticator(config: HttpConfig) -> Authenticator | None:
    if config.auth == "token":
        assert config.auth_token is not None  # load_http_config guarantees it
        return _shared_token_check(config.auth_token)
    if config.auth == "knock-key":
        return _knock_key_check
    return None


def _shared_token_check(expected: SecretStr) -> Authenticator:
    expected_bytes = expected.get_secret_value().encode()
    missing = _Refusal(
        "This knock-mcp server requires a token: send Authorization: Bearer <token>, the value of "
        f"{AUTH_TOKEN_VARIABLE} on the server (ask its operator).",
        error=None,
    )
    wrong = _Refusal(
        f"The bearer token does not match {AUTH_TOKEN_VARIABLE} on the server: check the token "
        "configured in your MCP client."
    )
    # The client id names no one: every caller of a shared token is the same principal.
    user = AuthenticatedUser(AccessToken(token="shared-token", client_id="knock-mcp-token", scopes=[]))

    def check(token: str | None) -> AuthenticatedUser | _Refusal:
        if not token:
            return missing
        # Constant time, so the comparison cannot be timed to guess the token a byte at a time.
        return user if hmac.compare_digest(token.encode(), expected_bytes) else wrong

    return check


def _knock_key_check(token: str | None) -> AuthenticatedUser | _Refusal:
    if not token:
        return _Refusal(
            "This knock-mcp server uses each caller's own Knock key: send Authorization: Bearer sk_..., "
            "a secret key from the Knock dashboard (Platform > API keys).",
            error=None,
        )
    if token.startswith("pk_"):
        return _Refusal(
            "That is a Knock public key (pk_...), which cannot read bulk operations: send a secret key "
            "(sk_...) from the Knock dashboard, Platform > API keys."
        )
    if not _PLAUSIBLE_SECRET_KEY.fullmatch(token):
        return _Refusal(
            "The bearer token is not a Knock secret key (sk_ followed by letters, digits, - and _): "
            "send the secret key alone, with no spaces or quotes."
        )
    # Each key is its own principal; the id is a digest, so it can appear in a log without the key.
    principal = "knock-key-" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return AuthenticatedUser(AccessToken(token=token, client_id=principal, scopes=[]))


def _check_host_and_origin(
    scope: Scope, security: TransportSecuritySettings
) -> tuple[int, dict[str, Any]] | None:
    """DNS-rebinding protection with a refusal that says how to allow a legitimate name.

    The SDK's transport checks the same settings again behind this; this copy exists for the message.
    """
    headers = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in (b"host", b"origin")
    }
    host = headers.get("host", "")
    if not _matches(host, security.allowed_hosts):
        logger.warning("Refused a request for Host %r", host[:200])
        return 421, _jsonrpc_error(
            f"Host {host[:200]!r} is not served here (DNS-rebinding protection). If clients really reach "
            "this server by that name, start it with --allowed-host for it (or KNOCK_MCP_ALLOWED_HOSTS)."
        )
    origin = headers.get("origin")
    if origin is not None and not _matches(origin, security.allowed_origins):
        logger.warning("Refused a request from Origin %r", origin[:200])
        return 403, _jsonrpc_error(
            f"Origin {origin[:200]!r} may not call this server (DNS-rebinding protection). To let a web "
            "app on it call knock-mcp, start the server with --allowed-origin for it "
            "(or KNOCK_MCP_ALLOWED_ORIGINS)."
        )
    return None


def _matches(value: str, allowed: Sequence[str]) -> bool:
    """Exact, or `name:*` for any port: the SDK's rule."""
    return any(
        value == pattern or (pattern.endswith(":*") and value.startswith(pattern[:-1])) for pattern in allowed
    )


_OPEN_SERVER_REACHED_FROM_OUTSIDE = (
    "This knock-mcp runs without authentication (--auth none), which serves only callers on its own "
    "machine, and this request arrived on an address other machines can reach. Its operator must "
    "choose --auth token or --auth knock-key (KNOCK_MCP_AUTH) and set KNOCK_MCP_HOST to the address "
    "the server listens on."
)


def _arrived_on_loopback(scope: Scope) -> bool:
    """Whether the connection came in on a loopback address (or a Unix socket, which has no port).

    The last line of defence for `--auth none`: an ASGI factory cannot see the address uvicorn was
    told to listen on, so a server started with `--host 0.0.0.0` and no KNOCK_MCP_HOST would pass
    the start-up check; the address each connection arrived on cannot be mistaken."""
    server = scope.get("server")
    if server is None:
        return False
    host, port = server
    return port is None or is_loopback(str(host))


def _jsonrpc_error(message: str) -> dict[str, Any]:
    """A refusal in the shape MCP clients read: a JSON-RPC error with no request id."""
    return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}


async def _respond(
    send: Send,
    status: int,
    body: Mapping[str, Any],
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    head: bool = False,
) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *headers,
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": b"" if head else payload})
