"""The `knock-mcp` command: serve MCP over stdio or HTTP, or run one tool call from a terminal.

    knock-mcp [--demo] [--log-level LEVEL]                  serve MCP over stdio
    knock-mcp --transport http [--host H] [--port P] [--auth MODE] ...   serve MCP over HTTP
    knock-mcp [--demo] call TOOL [name=value ...] [--json]  run one tool and print its result

Only MCP protocol goes to stdout while serving over stdio; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import TextContent

from knock_mcp import __version__
from knock_mcp.bootstrap import demo_server, local_server, start
from knock_mcp.demo import PROCESSING_ID
from knock_mcp.errors import ConfigurationError
from knock_mcp.http.config import AUTH_MODES, HttpFlags, load_http_config
from knock_mcp.logs import LOG_LEVELS, LogLevel
from knock_mcp.state import ServerState
from knock_mcp.terminal import progress_line_for

EXIT_TOOL_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command-line mistake: reported on stderr with exit status 2."""


# Options that only mean something to the HTTP server, by their attribute and flag names.
HTTP_OPTIONS = {
    "host": "--host",
    "port": "--port",
    "auth": "--auth",
    "allowed_host": "--allowed-host",
    "allowed_origin": "--allowed-origin",
    "shutdown_timeout": "--shutdown-timeout",
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    http_only = [flag for name, flag in HTTP_OPTIONS.items() if getattr(args, name)]
    if args.transport == "http":
        if args.command is not None:
            parser.error("`call` runs one tool in this process: leave out --transport http")
        sys.exit(_serve_http(args))
    if http_only:
        parser.error(f"{', '.join(http_only)} only apply with --transport http")
    level: LogLevel = args.log_level or "WARNING"
    if args.demo:
        server = start(level, partial(demo_server, level))
    else:
        server = start(level, partial(local_server, os.environ, level, serving=args.command is None))
    try:
        if args.command == "call":
            sys.exit(anyio.run(_call, server, args.tool, args.arguments, args.json))
        server.run("stdio")
    except UsageError as error:
        print(f"knock-mcp: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        sys.exit(130)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="knock-mcp",
        description=(
            "MCP server for Knock bulk operations. With no command it serves MCP over stdio (or over "
            "HTTP with --transport http); "
            "configure it with KNOCK_API_KEY (a secret key, sk_...), and optionally KNOCK_BASE_URL, "
            "KNOCK_BRANCH, KNOCK_TIMEOUT, KNOCK_MAX_RETRIES and KNOCK_MCP_CALL_DEADLINE."
        ),
        epilog=f"example: knock-mcp --demo call summarize_bulk_operation id={PROCESSING_ID}",
    )
    parser.add_argument("--version", action="version", version=f"knock-mcp {__version__}")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="answer from a built-in simulated Knock with sample operations (no key, no network)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="stderr log level: debug, info, warning (default), error, critical",
    )
    _add_http_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    call = commands.add_parser(
        "call",
        help="run one tool through the MCP client and print its result",
        description="Run one tool and print its text. Exit status 1 on a tool error.",
    )
    call.add_argument("tool", help="tool name, e.g. summarize_bulk_operation")
    call.add_argument("arguments", nargs="*", metavar="name=value", help="tool arguments, e.g. id=<uuid>")
    call.add_argument("--json", action="store_true", help="print the structured content as JSON instead")
    return parser


def _add_http_options(parser: argparse.ArgumentParser) -> None:
    http = parser.add_argument_group(
        "serving over HTTP",
        "Each option can also come from the environment variable named in brackets; a flag wins. The "
        "shared token for --auth token is read from KNOCK_MCP_AUTH_TOKEN only, so it never shows in a "
        "process list.",
    )
    http.add_argument(
        "--transport",
        choices=("stdio", "http"),
        help="stdio (default): one client that spawned this process; http: Streamable HTTP at /mcp",
    )
    http.add_argument("--host", help="address to listen on (default 127.0.0.1) [KNOCK_MCP_HOST]")
    http.add_argument("--port", help="TCP port (default 8000) [KNOCK_MCP_PORT]")
    http.add_argument(
        "--auth",
        choices=AUTH_MODES,
        help=(
            "none (default; loopback only), token (callers send KNOCK_MCP_AUTH_TOKEN as a bearer token; "
            "the server uses KNOCK_API_KEY), knock-key (each caller sends their own Knock secret key as "
            "the bearer token) [KNOCK_MCP_AUTH]"
        ),
    )
    http.add_argument(
        "--allowed-host",
        action="append",
        metavar="HOST",
        help="a Host header clients use, e.g. mcp.example.com; repeatable "
        "[KNOCK_MCP_ALLOWED_HOSTS, comma-separated]",
    )
    http.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        help="a browser origin allowed to call, e.g. https://app.example.com; repeatable "
        "[KNOCK_MCP_ALLOWED_ORIGINS, comma-separated]",
    )
    http.add_argument(
        "--shutdown-timeout",
        metavar="SECONDS",
        help="on SIGTERM, how long calls in flight may run before they are cancelled (default 60) "
        "[KNOCK_MCP_SHUTDOWN_TIMEOUT]",
    )


def _serve_http(args: argparse.Namespace) -> int:
    flags = HttpFlags(
        host=args.host,
        port=args.port,
        auth=args.auth,
        allowed_hosts=args.allowed_host or (),
        allowed_origins=args.allowed_origin or (),
        demo=args.demo,
        log_level=args.log_level,
        shutdown_timeout=args.shutdown_timeout,
    )
    # Only now, serving over HTTP: the app and uvicorn are of no use to stdio or `call`.
    from knock_mcp.http.app import MCP_PATH, build_app  # noqa: PLC0415
    from knock_mcp.http.serving import serve  # noqa: PLC0415

    try:
        config = load_http_config(os.environ, flags)
        app = start(config.log_level, partial(build_app, config, os.environ))
    except ConfigurationError as error:
        print(f"knock-mcp: {error}", file=sys.stderr)
        return EXIT_USAGE
    host = f"[{config.host.strip('[]')}]" if ":" in config.host else config.host
    print(
        f"knock-mcp {__version__}: serving MCP at http://{host}:{config.port}{MCP_PATH} "
        f"(auth: {config.auth}{', demo' if config.demo else ''}); health check at /healthz",
        file=sys.stderr,
        flush=True,
    )
    serve(app, config)
    return 0


async def _call(server: MCPServer[ServerState], tool: str, assignments: list[str], as_json: bool) -> int:
    progress = progress_line_for(sys.stderr)
    on_progress = progress.update if progress is not None else None
    try:
        async with Client(server) as client:
            tools = {listed.name: listed for listed in (await client.list_tools()).tools}
            listed = tools.get(tool)
            # Usage errors are raised outside the client: inside, its task group would wrap them.
            arguments = _parse_arguments(assignments, listed.input_schema) if listed else None
            result = (
                await client.call_tool(tool, arguments, progress_callback=on_progress)
                if arguments is not None
                else None
            )
    finally:
        if progress is not None:
            progress.finish()
    if result is None:
        if listed is None:
            raise UsageError(f"no tool named {tool!r}; the tools are: {', '.join(sorted(tools))}")
        raise UsageError(f"arguments are name=value pairs (e.g. id=<uuid>), not {' '.join(assignments)!r}")
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    if result.is_error:
        print(text, file=sys.stderr)
        return EXIT_TOOL_ERROR
    print(json.dumps(result.structured_content, indent=2, ensure_ascii=False) if as_json else text)
    return 0


def _parse_arguments(assignments: list[str], input_schema: dict[str, Any]) -> dict[str, Any] | None:
    """`name=value` pairs, None if one is not; a value is JSON (a number, true, ...) unless the tool
    takes a string there."""
    properties: dict[str, Any] = input_schema.get("properties", {})
    arguments: dict[str, Any] = {}
    for assignment in assignments:
        name, separator, value = assignment.partition("=")
        if not separator or not name:
            return None
        if properties.get(name, {}).get("type") == "string":
            arguments[name] = value
            continue
        try:
            arguments[name] = json.loads(value)
        except ValueError:
            arguments[name] = value
    return arguments
