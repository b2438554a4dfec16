"""HTTP options: flags and KNOCK_MCP_* variables through one validation, and the safety rules in
both the command line and the ASGI factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from pydantic import SecretStr

from knock_mcp.cli import main
from knock_mcp.errors import ConfigurationError
from knock_mcp.http.app import KnockMcpApp, build_app
from knock_mcp.http.config import HttpConfig, HttpFlags, load_http_config
from knock_mcp.http.guards import transport_security
from knock_mcp.http.serving import create_app

TOKEN = "0123456789abcdefghijklmnopqrstuvwxyz"


def problems(environ: dict[str, str], flags: HttpFlags | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigurationError) as raised:
        load_http_config(environ, flags)
    return raised.value.problems


def test_defaults_serve_loopback_without_auth() -> None:
    config = load_http_config({})
    assert config == HttpConfig()
    assert (config.host, config.port, config.auth) == ("127.0.0.1", 8000, "none")
    security = transport_security(config)
    assert security.enable_dns_rebinding_protection
    assert "127.0.0.1:*" in security.allowed_hosts


def test_environment_gives_every_option_and_flags_win() -> None:
    environ = {
        "KNOCK_MCP_HOST": "0.0.0.0",
        "KNOCK_MCP_PORT": "9000",
        "KNOCK_MCP_AUTH": "token",
        "KNOCK_MCP_AUTH_TOKEN": TOKEN,
        "KNOCK_MCP_ALLOWED_HOSTS": "mcp.example.com, mcp.example.com:8443",
        "KNOCK_MCP_ALLOWED_ORIGINS": "https://app.example.com",
        "KNOCK_MCP_DEMO": "true",
        "KNOCK_MCP_LOG_LEVEL": "info",
        "KNOCK_MCP_SHUTDOWN_TIMEOUT": "20",
    }
    config = load_http_config(environ)
    assert config == HttpConfig(
        host="0.0.0.0",
        port=9000,
        auth="token",
        auth_token=SecretStr(TOKEN),
        allowed_hosts=("mcp.example.com", "mcp.example.com:8443"),
        allowed_origins=("https://app.example.com",),
        demo=True,
        log_level="INFO",
        shutdown_timeout=20.0,
    )
    flags = HttpFlags(port="9100", auth="knock-key", allowed_hosts=["other.example.com"])
    overridden = load_http_config({**environ, "KNOCK_MCP_AUTH_TOKEN": ""}, flags)
    assert (overridden.port, overridden.auth, overridden.allowed_hosts) == (
        9100,
        "knock-key",
        ("other.example.com",),
    )


def test_no_auth_off_loopback_is_refused_naming_both_options() -> None:
    found = problems({"KNOCK_MCP_HOST": "0.0.0.0", "KNOCK_MCP_ALLOWED_HOSTS": "mcp.example.com"})
    assert len(found) == 1
    assert "KNOCK_MCP_AUTH" in found[0]
    assert "KNOCK_MCP_HOST is '0.0.0.0'" in found[0]
    assert "--auth token" in found[0]
    by_flag = problems({}, HttpFlags(host="10.0.0.5", allowed_hosts=["mcp.example.com"]))
    assert by_flag[0].startswith("--auth (or KNOCK_MCP_AUTH) is none but --host is '10.0.0.5'")


def test_loopback_addresses_need_no_auth() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert load_http_config({"KNOCK_MCP_HOST": host}).host == host


def test_off_loopback_needs_the_host_names_clients_use() -> None:
    found = problems({"KNOCK_MCP_HOST": "0.0.0.0", "KNOCK_MCP_AUTH": "knock-key"})
    assert len(found) == 1
    assert "--allowed-host" in found[0]


def test_every_bad_option_is_named_at_once() -> None:
    found = problems(
        {
            "KNOCK_MCP_PORT": "80000",
            "KNOCK_MCP_AUTH": "password",
            "KNOCK_MCP_ALLOWED_HOSTS": "https://mcp.example.com/",
            "KNOCK_MCP_ALLOWED_ORIGINS": "app.example.com",
            "KNOCK_MCP_DEMO": "maybe",
            "KNOCK_MCP_LOG_LEVEL": "loud",
            "KNOCK_MCP_SHUTDOWN_TIMEOUT": "0",
        },
        HttpFlags(host="bad host!"),
    )
    named = [problem.split(" ")[0] for problem in found]
    assert named == [
        "--host",
        "KNOCK_MCP_PORT",
        "KNOCK_MCP_AUTH",
        "KNOCK_MCP_ALLOWED_HOSTS",
        "KNOCK_MCP_ALLOWED_ORIGINS",
        "KNOCK_MCP_DEMO",
        "KNOCK_MCP_LOG_LEVEL",
        "KNOCK_MCP_SHUTDOWN_TIMEOUT",
    ]


def test_token_mode_needs_a_long_token_that_is_never_echoed() -> None:
    assert "must be set" in problems({"KNOCK_MCP_AUTH": "token"})[0]
    short = problems({"KNOCK_MCP_AUTH": "token", "KNOCK_MCP_AUTH_TOKEN": "hunter2-secret"})
    assert "at least 32 characters" in short[0]
    assert "hunter2" not in short[0]
    spaced = problems({"KNOCK_MCP_AUTH": "token", "KNOCK_MCP_AUTH_TOKEN": TOKEN + " x"})
    assert "without spaces" in spaced[0]


def test_a_token_that_nothing_would_check_is_refused() -> None:
    found = problems({"KNOCK_MCP_AUTH_TOKEN": TOKEN})
    assert "is set but" in found[0]
    assert TOKEN not in found[0]


def test_the_factory_applies_the_same_rules(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KNOCK_MCP_HOST", "0.0.0.0")
    monkeypatch.setenv("KNOCK_MCP_ALLOWED_HOSTS", "mcp.example.com")
    with pytest.raises(SystemExit) as exited:
        create_app()
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "KNOCK_MCP_AUTH" in error
    assert "Traceback" not in error


def test_the_factory_refuses_a_bad_knock_setting_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KNOCK_BASE_URL", "http://api.knock.example.com")
    monkeypatch.setenv("KNOCK_MCP_DEMO", "")
    with pytest.raises(SystemExit):
        create_app()
    assert "KNOCK_BASE_URL" in capsys.readouterr().err


def test_the_factory_builds_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNOCK_MCP_DEMO", "1")
    assert isinstance(create_app(), KnockMcpApp)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--transport", "http", "--host", "0.0.0.0", "--allowed-host", "x.example"],
            "--auth (or KNOCK_MCP_AUTH) is none",
        ),
        (["--transport", "http", "--port", "0"], "--port must be a TCP port"),
        (["--port", "9000"], "--port only apply with --transport http"),
        (["--transport", "http", "call", "get_bulk_operation"], "leave out --transport http"),
    ],
)
def test_the_command_line_refuses_unsafe_or_misplaced_options(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


@asynccontextmanager
async def running(app: KnockMcpApp) -> AsyncIterator[None]:
    """The app between its ASGI lifespan's startup and shutdown, as uvicorn runs it."""
    to_app, app_receives = anyio.create_memory_object_stream[dict[str, Any]](2)
    app_sends, from_app = anyio.create_memory_object_stream[dict[str, Any]](2)

    async def receive() -> dict[str, Any]:
        return await app_receives.receive()

    async def send(message: MutableMapping[str, Any]) -> None:
        await app_sends.send(dict(message))

    async with to_app, app_receives, app_sends, from_app, anyio.create_task_group() as tasks:
        tasks.start_soon(app, {"type": "lifespan"}, receive, send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        yield
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


def test_no_auth_refuses_allowed_hosts_other_machines_can_use() -> None:
    (problem,) = problems({}, HttpFlags(allowed_hosts=["mcp.example.com"]))
    assert "is none but --allowed-host lets clients reach this server as mcp.example.com" in problem
    assert load_http_config({}, HttpFlags(allowed_hosts=["localhost:8000", "[::1]:*"])).auth == "none"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("auth", "arrived_on", "status"),
    [
        # uvicorn --factory ... --host 0.0.0.0 with KNOCK_MCP_HOST left at its loopback default: the
        # start-up check passes, so the address each request arrived on is what refuses it.
        ("none", "http://10.1.2.3:8000", 403),
        ("none", "http://127.0.0.1:8000", 200),
        ("token", "http://10.1.2.3:8000", 200),
    ],
)
async def test_no_auth_answers_only_requests_that_arrived_on_loopback(
    auth: str, arrived_on: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"KNOCK_MCP_DEMO": "1", "KNOCK_MCP_AUTH": auth}
    if auth == "token":
        environ["KNOCK_MCP_AUTH_TOKEN"] = TOKEN
    app = build_app(load_http_config(environ), environ)
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {
        # A forged Host that passes the DNS-rebinding check: only the arrival address is left.
        "Host": "127.0.0.1:8000",
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    transport = httpx2.ASGITransport(app=app)
    async with running(app), httpx2.AsyncClient(transport=transport, base_url=arrived_on) as client:
        response = await client.post("/mcp", json=ping, headers=headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert "--auth token, --auth knock-key or --auth oauth" in response.json()["error"]["message"]
        assert "KNOCK_MCP_HOST" in caplog.text
