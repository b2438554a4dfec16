"""`knock-mcp --transport http --auth oauth` as a real process: metadata, challenges and hostile tokens.

The issuer here is the loopback one of oauth_issuer.py (keys generated per run); the whole sign-in
flow against a real authorization server is in test_oauth_e2e.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx2
import pytest

from knock_mcp.errors import ConfigurationError
from knock_mcp.http.config import load_http_config
from tests.support.fake_knock import FakeKnock
from tests.support.http_server import (
    MODERN_HEADERS,
    TOOLS_LIST,
    HttpServer,
    SharedHttpServers,
    client_for,
    knock_env,
)
from tests.support.keys import SECRET
from tests.support.oauth_issuer import HOSTILE_NAMES, RESOURCE, LoopbackIssuer, hostile_tokens, unsigned
from tests.support.payloads import load_fixture
from tests.support.results import text

pytestmark = pytest.mark.anyio

COMPLETED_ID = load_fixture("completed")["id"]
METADATA_URL = "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
# The refusal each hostile token meets over HTTP: status and the error code in WWW-Authenticate.
EXPECTED = dict.fromkeys(HOSTILE_NAMES, (401, 'error="invalid_token"')) | {
    "missing scope": (403, 'error="insufficient_scope", error_description="The access token lacks'),
}


def oauth_env(fake_knock: FakeKnock, issuer: LoopbackIssuer) -> dict[str, str]:
    # The public URL names 127.0.0.1:8000, which the tests' server does not listen on: what matters
    # is that tokens carry it as their audience and the metadata names it.
    return knock_env(
        fake_knock,
        KNOCK_MCP_OAUTH_ISSUER=issuer.issuer,
        KNOCK_MCP_PUBLIC_URL=RESOURCE,
        KNOCK_MCP_OAUTH_SCOPES="knock:read",
    )


def post(server: HttpServer, **headers: str) -> httpx2.Response:
    return server.http.post("/mcp", json=TOOLS_LIST, headers=MODERN_HEADERS | headers)


def header_of_a_megabyte_refused(server: HttpServer) -> bool:
    """uvicorn answers 400 before the app sees the request, or resets the connection while the
    header is still on its way; either way nothing is served."""
    try:
        return post(server, authorization="Bearer " + "a" * 1024 * 1024).status_code == 400
    except httpx2.TransportError:
        return True


@pytest.mark.shared_server("oauth")
async def test_a_valid_token_calls_tools_and_every_hostile_token_is_refused_before_knock(
    shared_knock: FakeKnock, shared_issuer: LoopbackIssuer, http_servers: SharedHttpServers
) -> None:
    hostile = hostile_tokens(shared_issuer)
    server = http_servers.started(oauth_env(shared_knock, shared_issuer), ["--auth", "oauth"])
    refusals = {
        name: post(server, authorization=f"Bearer {token}") for name, (token, _, _) in hostile.items()
    }
    missing = post(server)
    in_query = server.http.post(
        f"/mcp?access_token={shared_issuer.sign({'scope': 'knock:read'})}",
        json=TOOLS_LIST,
        headers=MODERN_HEADERS,
    )
    huge_header = header_of_a_megabyte_refused(server)
    assert shared_knock.requests == [], "a refused token reached Knock"

    token = shared_issuer.sign({"scope": "knock:read", "sub": "alice"})
    async with client_for(server, "auto", {"Authorization": f"Bearer {token}"}) as client:
        result = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
    assert not result.is_error, text(result)
    logged = server.stderr()

    for name, refused in refusals.items():
        status, error = EXPECTED[name]
        challenge = refused.headers["www-authenticate"]
        assert (refused.status_code, name) == (status, name)
        assert challenge.startswith(f'Bearer resource_metadata="{METADATA_URL}", '), name
        assert error in challenge, name
        assert refused.json()["error_description"] in challenge, name
        assert hostile[name][0] not in refused.text, name
    assert 'scope="knock:read"' in refusals["missing scope"].headers["www-authenticate"]
    for no_token in (missing, in_query):
        assert no_token.status_code == 401
        # RFC 6750 §3.1: no error code when no token was sent; only where to get one.
        assert no_token.headers["www-authenticate"] == f'Bearer resource_metadata="{METADATA_URL}"'
        assert shared_issuer.issuer in no_token.json()["error_description"]
    assert huge_header
    # The server's own Knock key, never a caller's token, went to Knock.
    assert {seen.headers["Authorization"] for seen in shared_knock.requests} == {f"Bearer {SECRET}"}
    assert token not in logged
    assert SECRET not in logged
    for hostile_token, _, _ in hostile.values():
        assert hostile_token not in logged


@pytest.mark.shared_server("oauth")
async def test_protected_resource_metadata_is_public_and_readable_from_a_browser(
    shared_knock: FakeKnock, shared_issuer: LoopbackIssuer, http_servers: SharedHttpServers
) -> None:
    server = http_servers.started(oauth_env(shared_knock, shared_issuer), ["--auth", "oauth"])
    path_inserted = server.http.get("/.well-known/oauth-protected-resource/mcp")
    root = server.http.get("/.well-known/oauth-protected-resource", headers={"origin": "https://x.y"})
    preflight = server.http.options(
        "/.well-known/oauth-protected-resource/mcp",
        headers={"origin": "https://claude.ai", "access-control-request-method": "GET"},
    )
    posted = server.http.post("/.well-known/oauth-protected-resource")
    health = server.http.get("/healthz").json()
    expected = {
        "resource": RESOURCE,
        "authorization_servers": [shared_issuer.issuer],
        "scopes_supported": ["knock:read"],
        "bearer_methods_supported": ["header"],
        "resource_name": "knock-mcp",
    }
    assert path_inserted.json() == root.json() == expected
    assert root.headers["access-control-allow-origin"] == "*"
    assert preflight.status_code == 204
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert posted.status_code == 405
    assert health["oauth_keys"] == "ok"  # fetched at start-up


async def test_without_the_issuers_keys_a_token_gets_503_and_healthz_says_why(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}/realms/team"
    env = knock_env(fake_knock, KNOCK_MCP_OAUTH_ISSUER=unreachable, KNOCK_MCP_PUBLIC_URL=RESOURCE)
    with HttpServer(env, tmp_path, ["--auth", "oauth"]) as server:
        health = server.http.get("/healthz")
        # Well formed, so that it gets as far as needing a key.
        token = unsigned({"alg": "ES256", "typ": "at+jwt", "kid": "key-1"}, {"aud": RESOURCE}, b"signature")
        refused = post(server, authorization=f"Bearer {token}")
        missing = post(server)
    assert health.status_code == 200
    assert health.json()["oauth_keys"] == "unavailable"
    assert "did not answer" in health.json()["oauth_problem"]
    assert refused.status_code == 503
    assert "could not be fetched" in refused.json()["error_description"]
    assert "www-authenticate" not in refused.headers
    assert missing.status_code == 401  # no token: the client is still told where to get one
    assert fake_knock.requests == []


def test_oauth_options_are_checked_with_the_others() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_http_config({"KNOCK_MCP_AUTH": "oauth", "KNOCK_MCP_AUTH_TOKEN": "x" * 40})
    problems = "\n".join(raised.value.problems)
    for named in ("KNOCK_MCP_OAUTH_ISSUER", "KNOCK_MCP_PUBLIC_URL", "KNOCK_MCP_AUTH_TOKEN is set but"):
        assert named in problems

    config = load_http_config(
        {
            "KNOCK_MCP_AUTH": "oauth",
            "KNOCK_MCP_HOST": "0.0.0.0",
            "KNOCK_MCP_OAUTH_ISSUER": "https://example.eu.auth0.com/",
            "KNOCK_MCP_PUBLIC_URL": "https://mcp.example.com/mcp",
        }
    )
    # Clients reach the server by its public URL: no --allowed-host is needed for that name.
    assert config.allowed_hosts == ("mcp.example.com",)
    assert config.oauth is not None
    assert config.oauth.issuer == "https://example.eu.auth0.com/"
