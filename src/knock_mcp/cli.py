"""The `knock-mcp` command: serve MCP over stdio or HTTP, or run one tool call from a terminal.

    knock-mcp [--demo] [--log-level LEVEL]                  serve MCP over stdio
    knock-mcp --transport http [--host H] [--port P] [--auth MODE] ...   serve MCP over HTTP
    knock-mcp [--demo] call TOOL [name=value ...] [--json]  run one tool and print its result

Only MCP protocol goes to stdout while serving over stdio; logs go to stderr.

Reading the command line loads neither the SDK nor the server (importing `mcp` alone costs most of a
second of CPU): they are imported where a command serves or calls a tool, so --help, --version,
`call --help` and every usage error, an unknown tool or a malformed argument included, answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence
from functools import partial
from typing import Any

from knock_mcp import __version__
from knock_mcp.demo import PROCESSING_ID
from knock_mcp.errors import ConfigurationError
from knock_mcp.http.auth_modes import AUTH_MODES
from knock_mcp.logs import LOG_LEVELS, LogLevel
from knock_mcp.options import OptionReader, parse_switch
from knock_mcp.terminal import EXIT_INTERRUPTED, serve_stdio_at_a_terminal

EXIT_USAGE = 2

HELP_WIDTH = 79
EXAMPLE = f"knock-mcp --demo call summarize_bulk_operation id={PROCESSING_ID}"


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
    args, extras = parser.parse_known_args(argv)
    if args.command == "call":
        # name=value pairs after an option (`call TOOL --demo id=...`) are still the tool's arguments.
        args.arguments += [extra for extra in extras if "=" in extra and not extra.startswith("-")]
        extras = [extra for extra in extras if extra not in args.arguments]
    if extras:
        parser.error(unrecognized_arguments(extras, args.command))
    http_only = [flag for name, flag in HTTP_OPTIONS.items() if getattr(args, name)]
    if args.transport == "http":
        if args.command is not None:
            parser.error("`call` runs one tool in this process: leave out --transport http")
        sys.exit(_serve_http(args))
    if http_only:
        parser.error(f"{', '.join(http_only)} only apply with --transport http")
    level: LogLevel = args.log_level or "WARNING"
    # Read here as over HTTP: an MCP Bundle turns on the demo with KNOCK_MCP_DEMO ("true"/"false").
    demo = OptionReader(os.environ)
    args.demo = args.demo or demo.read("KNOCK_MCP_DEMO", parse_switch, False)
    if demo.problems:
        parser.error("; ".join(demo.problems))
    sys.exit(_serve_stdio_or_call(args, level))


def _serve_stdio_or_call(args: argparse.Namespace, level: LogLevel) -> int:
    arguments: dict[str, Any] = {}
    if args.command == "call":
        # Read from the tools' arguments, so that a mistake in the call is answered before the SDK loads.
        from knock_mcp.call_arguments import UsageError, read_arguments  # noqa: PLC0415

        try:
            arguments = read_arguments(args.tool, args.arguments)
        except UsageError as error:
            print(f"knock-mcp: {error}", file=sys.stderr)
            return EXIT_USAGE
    # Only now, serving or calling a tool: the SDK and the server are of no use to what came before.
    from knock_mcp.bootstrap import demo_server, local_server, start  # noqa: PLC0415
    from knock_mcp.call_command import run_call  # noqa: PLC0415

    if args.demo:
        server = start(level, partial(demo_server, level))
    else:
        server = start(level, partial(local_server, os.environ, level, serving=args.command is None))
    try:
        if args.command == "call":
            return run_call(server, args.tool, arguments, args.json)
        if sys.stdin.isatty():
            serve_stdio_at_a_terminal(sys.stderr, demo=args.demo, example=EXAMPLE)
        server.run("stdio")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


def _parser() -> argparse.ArgumentParser:
    # Raw text, wrapped here: argparse would otherwise break the example command across lines.
    parser = argparse.ArgumentParser(
        prog="knock-mcp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "MCP server for Knock bulk operations. With no command it serves MCP over stdio (or over "
            "HTTP with --transport http); "
            "configure it with KNOCK_API_KEY (a secret key, sk_...), and optionally KNOCK_BASE_URL, "
            "KNOCK_BRANCH, KNOCK_TIMEOUT, KNOCK_MAX_RETRIES and KNOCK_MCP_CALL_DEADLINE.",
            width=HELP_WIDTH,
        ),
        epilog=f"example:\n  {EXAMPLE}",
    )
    parser.add_argument("--version", action="version", version=f"knock-mcp {__version__}")
    _add_demo_and_log_level(parser, after_call=False)
    _add_http_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    call = commands.add_parser(
        "call",
        help="run one tool through the MCP client and print its result",
        description="Run one tool and print its text. Exit status 1 on a tool error.",
        epilog=f"example:\n  {EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    call.add_argument(
        "-h", "--help", action=CallHelp, help="show this help, then every tool and its arguments"
    )
    call.add_argument("tool", help="tool name, e.g. summarize_bulk_operation")
    call.add_argument("arguments", nargs="*", metavar="name=value", help="tool arguments, e.g. id=<uuid>")
    call.add_argument("--json", action="store_true", help="print the structured content as JSON instead")
    # Also accepted after `call`, where people put them: `knock-mcp call ... --demo`.
    _add_demo_and_log_level(call, after_call=True)
    return parser


class CallHelp(argparse.Action):
    """`call --help`: the usual help, then the tools and their arguments."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        # Imported here: only this help, of all the command line's answers, needs pydantic.
        from knock_mcp.call_arguments import tools_help  # noqa: PLC0415

        parser.print_help()
        print(f"\n{tools_help()}")
        parser.exit()


def unrecognized_arguments(extras: Sequence[str], command: str | None) -> str:
    message = f"unrecognized arguments: {' '.join(extras)}"
    if command == "call":
        return (
            f"{message}. After `call` come the tool, its name=value arguments and --json, --demo or "
            "--log-level; other options of knock-mcp go before `call`"
        )
    return f"{message} (see knock-mcp --help)"


def _add_demo_and_log_level(parser: argparse.ArgumentParser, *, after_call: bool) -> None:
    """After `call` they have no default, so that leaving them out there keeps what came before `call`."""
    parser.add_argument(
        "--demo",
        action="store_true",
        default=argparse.SUPPRESS if after_call else False,
        help="answer from a built-in simulated Knock with sample operations (no key, no network)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        default=argparse.SUPPRESS if after_call else None,
        help="stderr log level: debug, info, warning (default), error, critical",
    )


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
            "the bearer token), oauth (callers sign in with your authorization server, set by "
            "KNOCK_MCP_OAUTH_ISSUER and KNOCK_MCP_PUBLIC_URL; see docs/oauth.md) [KNOCK_MCP_AUTH]"
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
    from knock_mcp.http.config import HttpFlags, load_http_config  # noqa: PLC0415

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
    try:
        config = load_http_config(os.environ, flags)
        # Only now, with options that hold: the app, uvicorn and the SDK are of no use to stdio,
        # `call` or a mistake in the options.
        from knock_mcp.bootstrap import start  # noqa: PLC0415
        from knock_mcp.http.app import MCP_PATH, build_app  # noqa: PLC0415
        from knock_mcp.http.serving import serve  # noqa: PLC0415

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
