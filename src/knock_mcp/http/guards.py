"""Which requests reach the server at all: Host and Origin (DNS-rebinding protection), and, without
authentication, only connections that arrived on loopback. Each refusal says how to allow a
legitimate caller.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Scope

from knock_mcp.http.config import HttpConfig
from knock_mcp.settings import is_loopback

logger = logging.getLogger(__name__)

_LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
_LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


def transport_security(config: HttpConfig) -> TransportSecuritySettings:
    """Host and Origin checks: loopback names always, plus the names the operator allowed."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*_LOOPBACK_HOSTS, *config.allowed_hosts],
        allowed_origins=[*_LOOPBACK_ORIGINS, *config.allowed_origins],
    )


def check_host_and_origin(
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
        return 421, jsonrpc_error(
            f"Host {host[:200]!r} is not served here (DNS-rebinding protection). If clients really reach "
            "this server by that name, start it with --allowed-host for it (or KNOCK_MCP_ALLOWED_HOSTS)."
        )
    origin = headers.get("origin")
    if origin is not None and not _matches(origin, security.allowed_origins):
        logger.warning("Refused a request from Origin %r", origin[:200])
        return 403, jsonrpc_error(
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


OPEN_SERVER_REACHED_FROM_OUTSIDE = (
    "This knock-mcp runs without authentication (--auth none), which serves only callers on its own "
    "machine, and this request arrived on an address other machines can reach. Its operator must "
    "choose --auth token, --auth knock-key or --auth oauth (KNOCK_MCP_AUTH) and set KNOCK_MCP_HOST to "
    "the address the server listens on."
)


def arrived_on_loopback(scope: Scope) -> bool:
    """Whether the connection came in on a loopback address (or a Unix socket, which has no port).

    The last line of defence for `--auth none`: an ASGI factory cannot see the address uvicorn was
    told to listen on, so a server started with `--host 0.0.0.0` and no KNOCK_MCP_HOST would pass
    the start-up check; the address each connection arrived on cannot be mistaken."""
    server = scope.get("server")
    if server is None:
        return False
    host, port = server
    return port is None or is_loopback(str(host))


def jsonrpc_error(message: str) -> dict[str, Any]:
    """A refusal in the shape MCP clients read: a JSON-RPC error with no request id."""
    return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
