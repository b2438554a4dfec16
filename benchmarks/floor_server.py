"""The floor for `bench_stdio.py`: the least an MCP server can do to relay one Knock bulk operation.

It makes the same request as knock-mcp (one shared `httpx2.AsyncClient`, the same GET and key) and
hands back Knock's body untouched: no validation, no retries, no capping of failed items. Whatever
knock-mcp costs beyond this server is the price of what it adds. Keep it this small; a faster floor
would flatter nobody, a slower one would flatter knock-mcp.

    KNOCK_API_KEY=sk_... KNOCK_BASE_URL=http://127.0.0.1:PORT python benchmarks/floor_server.py
    uvicorn --factory benchmarks.floor_server:create_http_app ...   (for bench_http.py, from the root)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from mcp.server.mcpserver import Context, MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from knock_mcp.http.serving import set_nodelay_on_inherited_sockets


@asynccontextmanager
async def lifespan(_: MCPServer[httpx2.AsyncClient]) -> AsyncIterator[httpx2.AsyncClient]:
    """One client per process, as knock-mcp has, so both reuse a pooled connection to Knock."""
    headers = {"Authorization": f"Bearer {os.environ['KNOCK_API_KEY']}"}
    async with httpx2.AsyncClient(base_url=os.environ["KNOCK_BASE_URL"], headers=headers) as http:
        yield http


server: MCPServer[httpx2.AsyncClient] = MCPServer("knock-floor", lifespan=lifespan, log_level="WARNING")


@server.tool()
async def get_bulk_operation(id: str, ctx: Context[httpx2.AsyncClient]) -> str:
    """Knock's raw JSON for one bulk operation."""
    response = await ctx.request_context.lifespan_context.get(f"/v1/bulk_operations/{id}")
    # Without this a 404 would come back as a successful result and the benchmark could not tell.
    response.raise_for_status()
    return response.text


def create_http_app() -> Starlette:
    """The floor over HTTP, served as knock-mcp is: stateless, SSE responses, loopback Host checks
    (the SDK's default for 127.0.0.1). /healthz only tells the benchmark that it is up."""

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    set_nodelay_on_inherited_sockets()  # as knock-mcp's factory does: a fix to uvicorn's workers
    app = server.streamable_http_app(stateless_http=True, json_response=False)
    app.add_route("/healthz", healthz, methods=["GET"])
    return app


if __name__ == "__main__":
    server.run()
