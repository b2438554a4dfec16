"""The ASGI application: `/mcp` behind the guards, authentication and the drain; `/healthz`; and a
lifespan that runs the SDK's session manager and turns SIGTERM into a graceful drain.

MCP is served at /mcp in the SDK's stateless mode, so any replica can answer any request, and
responses stream as SSE so that progress reaches the caller and a disconnect cancels the call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.mcpserver import MCPServer
from sse_starlette.sse import AppStatus
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from knock_mcp import __version__
from knock_mcp.bootstrap import demo_server, http_server
from knock_mcp.demo import demo_health
from knock_mcp.fleet import Fleet, LocalFleet
from knock_mcp.http.auth import Refusal, authenticator, bearer_token, caller_key
from knock_mcp.http.config import HttpConfig
from knock_mcp.http.drain import Drain, listen_closer
from knock_mcp.http.guards import (
    OPEN_SERVER_REACHED_FROM_OUTSIDE,
    arrived_on_loopback,
    check_host_and_origin,
    jsonrpc_error,
    transport_security,
)
from knock_mcp.oauth.config import OAuthConfig
from knock_mcp.oauth.metadata import protected_resource_metadata, resource_metadata_paths
from knock_mcp.oauth.verifier import JwtVerifier
from knock_mcp.state import ServerState

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"
# The largest request a client sends here is a tool call with an id and its `_meta` (client info
# and capabilities): a few KB. The SDK's 4 MiB default would let a thousand concurrent uploads pin
# 4 GB; 64 KiB leaves a tenfold margin over any real request and bounds that to 64 MB.
MAX_REQUEST_BODY_BYTES = 64 * 1024


def build_app(config: HttpConfig, environ: Mapping[str, str]) -> KnockMcpApp:
    """The HTTP app and the MCP server behind it; raises `ConfigurationError` naming every unusable
    variable."""
    caller_keys = caller_key if config.auth == "knock-key" else None
    if config.demo:
        return KnockMcpApp(demo_server(config.log_level, caller_keys), config, knock_key_configured=True)
    server, knock_key_configured, fleet = http_server(environ, config.log_level, caller_keys)
    return KnockMcpApp(server, config, knock_key_configured=knock_key_configured, fleet=fleet)


class KnockMcpApp:
    """The ASGI application: `/mcp` behind authentication and the drain, `/healthz`, and a lifespan
    that runs the SDK's session manager and turns SIGTERM into a graceful drain."""

    def __init__(
        self,
        server: MCPServer[ServerState],
        config: HttpConfig,
        *,
        knock_key_configured: bool,
        fleet: Fleet | None = None,
    ) -> None:
        self._security = transport_security(config)
        # Built for its session manager, which serves /mcp below; its Starlette router is not used,
        # so that /healthz, the drain and authentication sit in front of it at no routing cost.
        server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            json_response=False,
            stateless_http=True,
            max_request_body_size=MAX_REQUEST_BODY_BYTES,
            transport_security=self._security,
            host=config.host,
        )
        self._session_manager = server.session_manager
        self._mcp = AuthContextMiddleware(self._session_manager.handle_request)
        self._verifier = JwtVerifier(config.oauth) if config.oauth is not None else None
        self._authenticate = authenticator(config, self._verifier)
        self._resource_metadata = _resource_metadata_response(config.oauth)
        self._warned_open_server = False
        self._drain = Drain(config.shutdown_timeout, listen_closer(server))
        # For load balancers and operators: nothing in it is secret, and it is the same for every caller.
        self._health: dict[str, Any] = {"status": "ok", "version": __version__} | (
            demo_health()
            if config.demo
            else {
                "knock_key_configured": knock_key_configured,
                "knock_key_source": "caller" if config.auth == "knock-key" else "server",
            }
        )
        self._fleet: Fleet = fleet if fleet is not None else LocalFleet()
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
        elif self._resource_metadata is not None and scope["path"] in self._resource_metadata.paths:
            # Public, like /healthz: no guard or credential stands before what says how to get one.
            await self._resource_metadata.serve(scope, send)
        else:
            await send_json(
                send, 404, {"error": f"not found: knock-mcp serves MCP at {MCP_PATH} and {HEALTH_PATH}"}
            )

    async def _serve_mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every check on an MCP request, in one place because their order is a security property:
        a draining replica refuses first; Host and Origin come before anything is read from a
        request a rebinding page may have sent; a server without authentication then answers only
        on loopback; only a POST's bearer token is checked; and the request runs inside the drain's
        tracking, so a shutdown waits for it."""
        if self._drain.started:
            await send_json(
                send,
                503,
                jsonrpc_error("knock-mcp is shutting down: send the request again (another replica answers)"),
                [(b"retry-after", b"1"), (b"connection", b"close")],
            )
            return
        refusal = check_host_and_origin(scope, self._security)
        if refusal is not None:
            await send_json(send, *refusal)
            return
        if self._authenticate is None and not arrived_on_loopback(scope):
            await send_json(send, 403, jsonrpc_error(OPEN_SERVER_REACHED_FROM_OUTSIDE))
            if not self._warned_open_server:
                self._warned_open_server = True
                logger.error(
                    "Refused a request that arrived on %s: with --auth none knock-mcp serves only "
                    "loopback. Set KNOCK_MCP_HOST to the address uvicorn listens on, and --auth token, "
                    "knock-key or oauth.",
                    scope["server"][0],
                )
            return
        if scope["method"] == "GET":
            # Stateless: there is no session for a standalone stream to belong to, so nothing could
            # ever be sent on one; the spec's answer is 405, and no idle stream holds up a shutdown.
            await send_json(
                send,
                405,
                jsonrpc_error("knock-mcp is stateless: send MCP requests to /mcp as POST"),
                [(b"allow", b"POST")],
            )
            return
        if self._authenticate is not None:
            user = await self._authenticate(bearer_token(scope))
            if isinstance(user, Refusal):
                await send_json(send, user.status, user.body(), user.headers())
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
            await send_json(send, 405, {"error": "GET /healthz"}, [(b"allow", b"GET, HEAD")])
            return
        body = {**self._health, "fleet": self._fleet.health()}
        if self._drain.started:
            body["status"] = "draining"
        if self._verifier is not None:
            # Says whether sign-ins can be checked; still 200, since every replica shares the issuer and
            # taking them all out of a load balancer would only hide this text behind its own error.
            body |= self._verifier.health()
        # A draining replica answers 503 so that load balancers stop sending it new requests.
        await send_json(send, 503 if self._drain.started else 200, body, head=scope["method"] == "HEAD")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self._session_manager.run())
                if self._verifier is not None:
                    stack.push_async_callback(self._verifier.aclose)
                    # Fetch the issuer's keys now, so that /healthz tells at once whether they can be had;
                    # a failure is logged and retried when a token arrives, and start-up goes on.
                    await self._verifier.keys.refresh()
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


@dataclass(frozen=True)
class _ResourceMetadataResponse:
    """RFC 9728 Protected Resource Metadata: public, the same for everyone, readable from a browser."""

    paths: frozenset[str]
    body: dict[str, Any]

    async def serve(self, scope: Scope, send: Send) -> None:
        cors = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", b"GET, OPTIONS"),
            # The SDK's clients send their protocol version with every metadata request.
            (b"access-control-allow-headers", b"mcp-protocol-version"),
            (b"cache-control", b"public, max-age=3600"),
        ]
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": cors})
            await send({"type": "http.response.body", "body": b""})
        elif scope["method"] in ("GET", "HEAD"):
            await send_json(send, 200, self.body, cors, head=scope["method"] == "HEAD")
        else:
            await send_json(send, 405, {"error": "GET this metadata"}, [*cors, (b"allow", b"GET, OPTIONS")])


def _resource_metadata_response(oauth: OAuthConfig | None) -> _ResourceMetadataResponse | None:
    if oauth is None:
        return None
    return _ResourceMetadataResponse(
        resource_metadata_paths(oauth, MCP_PATH), protected_resource_metadata(oauth)
    )


async def send_json(
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
