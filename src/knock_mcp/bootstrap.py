"""The one start-up path: configure logging, build the server (stdio, `call` or HTTP), freeze the GC.

`cli` (every transport) and `http.serving.create_app` (under uvicorn's own command) both start
here, so the demo, the warnings about the key and the GC freeze exist once.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TypeVar

from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from knock_mcp.demo import DEMO_BASE_URL, DemoKnock, demo_error_text, demo_instructions
from knock_mcp.errors import ConfigurationError
from knock_mcp.fleet import Fleet
from knock_mcp.logs import LogLevel, configure_logging
from knock_mcp.server import build_fleet, create_server
from knock_mcp.settings import Settings, load_settings
from knock_mcp.state import KeySource, ServerState

logger = logging.getLogger("knock_mcp")

_Built = TypeVar("_Built")


def start(log_level: LogLevel, build: Callable[[], _Built]) -> _Built:
    """Configure logging (building may warn), build what will serve, and freeze the GC."""
    configure_logging(log_level)
    built = build()
    # The ~100k objects created by imports live as long as the process: keep the garbage collector
    # from rescanning them during every full collection (it cut a 12,000-item call from ~65 to ~21 ms).
    gc.freeze()
    return built


def demo_server(log_level: LogLevel, caller_keys: KeySource | None = None) -> MCPServer[ServerState]:
    """The server over the built-in simulated Knock. It never reads KNOCK_API_KEY: a real key is
    never touched by a simulated Knock (over HTTP with --auth knock-key, callers still send one)."""
    return create_server(
        Settings(api_key=SecretStr("sk_demo"), base_url=DEMO_BASE_URL),
        transport=DemoKnock().transport(),
        api_key=caller_keys,
        extra_instructions=demo_instructions(),
        cache_final_operations=False,
        error_text=demo_error_text,
        log_level=log_level,
    )


def local_server(environ: Mapping[str, str], log_level: LogLevel, *, serving: bool) -> MCPServer[ServerState]:
    """The server for stdio and `call`. A bad setting does not stop it: a chat client would only
    see it vanish, so every tool call explains the problem instead (and, when `serving`, the log)."""
    config: Settings | ConfigurationError
    try:
        config = load_settings(environ)
    except ConfigurationError as error:
        config = error
    if serving:
        if isinstance(config, ConfigurationError):
            logger.error("%s Every tool call will report this until it is fixed.", config)
        elif config.api_key is None:
            _warn_missing_key("Use --demo to try it without a Knock account.")
    return create_server(config, log_level=log_level)


def http_server(
    environ: Mapping[str, str], log_level: LogLevel, caller_keys: KeySource | None
) -> tuple[MCPServer[ServerState], bool, Fleet]:
    """The server for HTTP, whether it holds a Knock key of its own, and what it shares with the rest
    of its fleet (for /healthz). `caller_keys` is given with
    --auth knock-key, when each request brings its caller's key. Unlike stdio, a bad setting raises
    `ConfigurationError`: a deployment should fail at once, where its operator looks."""
    settings = load_settings(environ, fleet=True)
    if caller_keys is not None:
        if settings.api_key is not None:
            logger.warning(
                "KNOCK_API_KEY is set but ignored: with --auth knock-key every request uses its caller's "
                "own key. Unset it so that this server holds no key."
            )
        settings = replace(settings, api_key=None)
    elif settings.api_key is None:
        _warn_missing_key("Use --auth knock-key to have each caller send their own key, or --demo to try it.")
    fleet = build_fleet(settings.fleet)
    server = create_server(settings, api_key=caller_keys, log_level=log_level, fleet=fleet)
    return server, settings.api_key is not None, fleet


def _warn_missing_key(alternatives: str) -> None:
    logger.warning(
        "KNOCK_API_KEY is not set: the server is running, but every tool call will explain how to set it. %s",
        alternatives,
    )
