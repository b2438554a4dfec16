"""`knock-mcp call`: one tool run in this process through the SDK's in-memory client.

This is where the command line meets the SDK and the server: `cli` imports this module only once
`call_arguments` has read the call, so that --help, --version, `call --help` and a usage error do
without them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import TextContent

from knock_mcp.state import ServerState
from knock_mcp.terminal import progress_line_for

EXIT_TOOL_ERROR = 1


def run_call(server: MCPServer[ServerState], tool: str, arguments: dict[str, Any], as_json: bool) -> int:
    """Run one tool and print its result; a reader that stops early (`| head`) is a normal end, not
    a crash."""
    try:
        status: int = anyio.run(_call, server, tool, arguments, as_json)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the broken pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status


async def _call(server: MCPServer[ServerState], tool: str, arguments: dict[str, Any], as_json: bool) -> int:
    progress = progress_line_for(sys.stderr)
    on_progress = progress.update if progress is not None else None
    try:
        async with Client(server) as client:
            result = await client.call_tool(tool, arguments, progress_callback=on_progress)
    finally:
        if progress is not None:
            progress.finish()
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    if result.is_error:
        print(text, file=sys.stderr)
        return EXIT_TOOL_ERROR
    print(json.dumps(result.structured_content, indent=2, ensure_ascii=False) if as_json else text)
    return 0
