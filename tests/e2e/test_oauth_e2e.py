"""The whole OAuth path against a real authorization server (oidc-provider under Node, see oidc_provider.py).

A client walks the way Claude's custom connector does: call /mcp, get 401, read the protected
resource metadata, the authorization server's metadata, register itself, sign in with the
authorization code and PKCE (the login and consent pages posted headlessly), get a token, call a
tool. Then a machine client's token (client_credentials with a resource), and a key rotation.
If npm cannot install oidc-provider these tests fail, saying why (see `install_provider`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from knock_mcp.oauth.verifier import KEY_REFETCH_INTERVAL_SECONDS
from knock_mcp.tls import default_tls_context
from tests.support.fake_knock import FakeKnock
from tests.support.http_server import (
    MODERN_HEADERS,
    TOOLS_LIST,
    HttpServer,
    client_for,
    free_port,
    knock_env,
)
from tests.support.keys import SECRET
from tests.support.oauth_issuer import SigningKey
from tests.support.oidc_provider import OidcProvider, sign_in_headlessly
from tests.support.payloads import load_fixture
from tests.support.polling import eventually
from tests.support.results import text

pytestmark = pytest.mark.anyio

COMPLETED_ID = load_fixture("completed")["id"]
SCOPE = "knock:read"
# Never contacted: the headless browser stops at the redirect to it and hands its query to the client.
REDIRECT_URI = "http://127.0.0.1:9/callback"


class RunningPair:
    def __init__(self, provider: OidcProvider, server: HttpServer) -> None:
        self.provider = provider
        self.server = server


@pytest.fixture
def pair(fake_knock: FakeKnock, tmp_path: Path) -> Iterator[RunningPair]:
    """oidc-provider issuing tokens for a knock-mcp that trusts it, both on loopback."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    with OidcProvider(resource, SCOPE, tmp_path) as provider:
        env = knock_env(
            fake_knock,
            KNOCK_MCP_OAUTH_ISSUER=provider.issuer,
            KNOCK_MCP_PUBLIC_URL=resource,
            KNOCK_MCP_OAUTH_SCOPES=SCOPE,
        )
        with HttpServer(env, tmp_path, ["--auth", "oauth"], port=port) as server:
            yield RunningPair(provider, server)


class MemoryStorage:
    """The client's token and registration, kept for the test's length only."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


async def test_a_client_signs_in_with_the_authorization_code_and_pkce_then_calls_a_tool(
    pair: RunningPair, fake_knock: FakeKnock
) -> None:
    redirected: dict[str, str] = {}

    async def open_browser(authorization_url: str) -> None:
        assert "code_challenge_method=S256" in authorization_url
        redirected.update(await sign_in_headlessly(authorization_url, REDIRECT_URI))

    async def receive_callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(
            code=redirected["code"], state=redirected.get("state"), iss=redirected.get("iss")
        )

    storage = MemoryStorage()
    oauth = OAuthClientProvider(
        server_url=pair.server.mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="knock-mcp end-to-end test",
            redirect_uris=[AnyUrl(REDIRECT_URI)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=open_browser,
        callback_handler=receive_callback,
    )
    walk: list[str] = []

    async def record(response: httpx2.Response) -> None:
        walk.append(f"{response.request.method} {response.request.url.path} {response.status_code}")

    async with (
        httpx2.AsyncClient(
            auth=oauth, event_hooks={"response": [record]}, timeout=30, verify=default_tls_context()
        ) as http,
        Client(streamable_http_client(pair.server.mcp_url, http_client=http)) as client,
    ):
        result = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})

    assert not result.is_error, text(result)
    assert "has completed" in text(result)
    issuer_path = "/tenant"
    assert walk[:8] == [
        "POST /mcp 401",
        "GET /.well-known/oauth-protected-resource/mcp 200",
        # RFC 8414 with path insertion, then OpenID Connect's two forms: this issuer has the last.
        f"GET /.well-known/oauth-authorization-server{issuer_path} 404",
        f"GET /.well-known/openid-configuration{issuer_path} 404",
        f"GET {issuer_path}/.well-known/openid-configuration 200",
        f"POST {issuer_path}/reg 201",
        f"POST {issuer_path}/token 200",
        "POST /mcp 200",
    ], walk
    assert storage.tokens is not None
    assert storage.tokens.scope is not None
    assert SCOPE in storage.tokens.scope.split()
    assert {seen.headers["Authorization"] for seen in fake_knock.requests} == {f"Bearer {SECRET}"}
    logged = pair.server.stderr()
    assert storage.tokens.access_token not in logged
    assert SECRET not in logged


async def test_a_machine_clients_tokens_are_accepted_before_and_after_the_provider_rotates_its_key(
    pair: RunningPair,
) -> None:
    """A machine client gets a token for this resource with client_credentials and calls a tool; then
    the provider signs with a new key, and tokens signed with it are accepted too."""
    before = pair.provider.client_credentials_token(resource=pair.server.mcp_url)
    async with client_for(pair.server, "auto", {"Authorization": f"Bearer {before}"}) as client:
        result = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
    assert not result.is_error, text(result)

    pair.provider.restart(SigningKey("provider-key-2", "RS256"))
    after = pair.provider.client_credentials_token()

    # knock-mcp refetches the keys when a token names one it does not hold, at most once per
    # interval (counted from start-up here): within that the new key must be taken up.
    await eventually(
        lambda: post_tools_list(pair.server, after) == 200, within=KEY_REFETCH_INTERVAL_SECONDS + 5
    )
    async with client_for(pair.server, "auto", {"Authorization": f"Bearer {after}"}) as client:
        result = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
    assert not result.is_error, text(result)
    assert pair.server.stderr().count("Fetched 1 signing key(s)") == 2


def post_tools_list(server: HttpServer, token: str) -> int:
    headers = {**MODERN_HEADERS, "authorization": f"Bearer {token}"}
    return server.http.post("/mcp", json=TOOLS_LIST, headers=headers).status_code
