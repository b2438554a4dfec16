"""knock-mcp over Streamable HTTP.

    knock-mcp --transport http [--host H] [--port P] [--auth none|token|knock-key|oauth] ...
    uvicorn --factory knock_mcp.http:create_app --workers 4 --http knock_mcp.http:RequestArrivalDeadline

One module per concern: `config` (options from flags or `KNOCK_MCP_*` variables), `auth` (the bearer
check of each --auth mode), `guards` (Host/Origin, loopback), `drain` (graceful shutdown), `app` (the
ASGI app and the order of checks on each request), `serving` (uvicorn, the arrival deadline,
socket options). The two documented entry points are resolved lazily (PEP 562), so that importing
`knock_mcp.http.config` (as `cli` does for its flags) does not load uvicorn and starlette.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from knock_mcp.http.serving import RequestArrivalDeadline, create_app

__all__ = ["RequestArrivalDeadline", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        # Imported on first use, not at the top: that is what keeps `http.config` light.
        from knock_mcp.http import serving  # noqa: PLC0415

        return getattr(serving, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
