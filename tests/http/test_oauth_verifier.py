"""The OAuth verifier on its own: real keys and a real issuer on loopback, an injected clock, no app."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from knock_mcp.oauth.config import OAuthConfig, load_oauth_config
from knock_mcp.oauth.metadata import (
    bearer_challenge,
    protected_resource_metadata,
    resource_metadata_paths,
    resource_metadata_url,
)
from knock_mcp.oauth.verifier import (
    CLOCK_SKEW_SECONDS,
    KEY_MAX_AGE_SECONDS,
    KEY_REFETCH_INTERVAL_SECONDS,
    InsufficientScope,
    InvalidToken,
    JwtVerifier,
    KeysUnavailable,
)
from knock_mcp.options import OptionReader
from tests.support.oauth_issuer import (
    HOSTILE_NAMES,
    ISSUER_PATH,
    RESOURCE,
    LoopbackIssuer,
    SigningKey,
    hostile_tokens,
)

pytestmark = pytest.mark.anyio

JWKS_PATH = ISSUER_PATH + "/jwks"


class FakeClock:
    """Wall clock and monotonic clock that move only when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()
        self.monotonic = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.monotonic += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_config(issuer: LoopbackIssuer, **changes: Any) -> OAuthConfig:
    config: dict[str, Any] = {
        "issuer": issuer.issuer,
        "resource": RESOURCE,
        "audiences": (RESOURCE,),
        "required_scopes": ("knock:read",),
    }
    return OAuthConfig(**{**config, **changes})


def make_verifier(issuer: LoopbackIssuer, clock: FakeClock, **changes: Any) -> JwtVerifier:
    return JwtVerifier(
        make_config(issuer, **changes), clock=lambda: clock.now, monotonic=lambda: clock.monotonic
    )


async def test_a_good_token_names_its_caller_and_never_carries_the_token(
    issuer: LoopbackIssuer, clock: FakeClock
) -> None:
    verifier = make_verifier(issuer, clock)
    token = issuer.sign({"scope": "knock:read profile", "sub": "alice"})

    access = await verifier.verify(token)

    assert access.client_id == "client-1"
    assert access.subject == "alice"
    assert access.scopes == ["knock:read", "profile"]
    assert access.resource == RESOURCE
    assert (access.claims or {})["iss"] == issuer.issuer
    assert token not in access.model_dump_json()
    assert verifier.health() == {"oauth_keys": "ok"}
    await verifier.aclose()


async def test_discovery_falls_back_to_openid_connect_for_an_issuer_with_a_path(
    issuer: LoopbackIssuer, clock: FakeClock
) -> None:
    """The loopback issuer serves only `<issuer>/.well-known/openid-configuration`, as Keycloak does."""
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.sign({"scope": "knock:read"}))

    tried = [path for path in issuer.requests if ".well-known" in path]
    assert tried == [
        "/.well-known/oauth-authorization-server" + ISSUER_PATH,
        "/.well-known/openid-configuration" + ISSUER_PATH,
        ISSUER_PATH + "/.well-known/openid-configuration",
    ]
    await verifier.aclose()


async def test_verified_tokens_are_cached_until_they_expire(issuer: LoopbackIssuer, clock: FakeClock) -> None:
    verifier = make_verifier(issuer, clock)
    token = issuer.sign({"scope": "knock:read", "exp": int(clock.now) + 100})
    await verifier.verify(token)
    issuer.keys = []  # were the signature checked again, no key would be found

    assert (await verifier.verify(token)).subject == "user-1"

    clock.advance(100 + CLOCK_SKEW_SECONDS)
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)
    await verifier.aclose()


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(0, True), (CLOCK_SKEW_SECONDS - 1, True), (CLOCK_SKEW_SECONDS, False), (3600, False)],
)
async def test_expiry_allows_the_clock_skew_once(
    issuer: LoopbackIssuer, clock: FakeClock, offset: int, accepted: bool
) -> None:
    """`offset` seconds past `exp`: within the skew the token passes; the cache applies the same rule."""
    verifier = make_verifier(issuer, clock)
    expires_at = int(clock.now) + 10
    token = issuer.sign({"scope": "knock:read", "exp": expires_at})
    await verifier.verify(token)  # cached while valid

    for fresh in (verifier, make_verifier(issuer, clock)):
        clock.now = expires_at + offset
        if accepted:
            assert (await fresh.verify(token)).expires_at == expires_at
        else:
            with pytest.raises(InvalidToken, match="expired"):
                await fresh.verify(token)
        await fresh.aclose()


async def test_not_yet_valid_tokens_are_refused_beyond_the_skew(
    issuer: LoopbackIssuer, clock: FakeClock
) -> None:
    verifier = make_verifier(issuer, clock)
    now = int(clock.now)
    assert await verifier.verify(issuer.sign({"scope": "knock:read", "nbf": now + CLOCK_SKEW_SECONDS}))
    with pytest.raises(InvalidToken, match="not valid yet"):
        await verifier.verify(issuer.sign({"scope": "knock:read", "nbf": now + CLOCK_SKEW_SECONDS + 5}))
    await verifier.aclose()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_tokens_are_refused_with_a_reason(
    issuer: LoopbackIssuer, clock: FakeClock, name: str
) -> None:
    token, refusal, reason = hostile_tokens(issuer)[name]
    verifier = make_verifier(issuer, clock)

    with pytest.raises(refusal) as raised:
        await verifier.verify(token)

    assert reason in str(raised.value)
    assert token not in str(raised.value)
    await verifier.aclose()


async def test_an_id_token_is_refused_even_when_other_types_are_allowed(
    issuer: LoopbackIssuer, clock: FakeClock
) -> None:
    """With KNOCK_MCP_OAUTH_ACCEPT_ANY_TYP, a JWT-typed access token passes but an ID token never does."""
    verifier = make_verifier(issuer, clock, accept_any_typ=True, required_scopes=())
    assert await verifier.verify(issuer.sign({"scp": ["knock:read"]}, headers={"typ": "JWT"}))
    for claims in ({"nonce": "n", "scope": "knock:read"}, {"at_hash": "h", "scope": "x"}, {}):
        with pytest.raises(InvalidToken, match="ID token"):
            await verifier.verify(issuer.sign(claims, headers={"typ": "JWT"}))
    await verifier.aclose()


async def test_extra_audiences_and_entra_scp_are_accepted(issuer: LoopbackIssuer, clock: FakeClock) -> None:
    verifier = make_verifier(
        issuer,
        clock,
        audiences=(RESOURCE, "api-client-id"),
        required_scopes=("mcp.access",),
        scopes_supported=("api://api-client-id/mcp.access",),
    )
    access = await verifier.verify(
        issuer.sign({"aud": "api-client-id", "scp": "mcp.access", "azp": "claude", "client_id": None})
    )
    assert (access.resource, access.client_id) == ("api-client-id", "claude")

    with pytest.raises(InsufficientScope) as raised:
        await verifier.verify(issuer.sign({"aud": "api-client-id", "scp": "other"}))
    # Clients are told the scope to request, which for Entra differs from what the token carries.
    assert raised.value.required_scopes == ("api://api-client-id/mcp.access",)
    await verifier.aclose()


async def test_a_flood_of_unknown_kids_costs_the_issuer_one_request_per_interval(
    issuer: LoopbackIssuer, clock: FakeClock
) -> None:
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.sign({"scope": "knock:read"}))
    assert issuer.requests[JWKS_PATH] == 1
    clock.advance(KEY_REFETCH_INTERVAL_SECONDS)

    for number in range(50):
        with pytest.raises(InvalidToken, match="does not publish"):
            await verifier.verify(issuer.sign({"scope": "knock:read"}, key=SigningKey(f"made-up-{number}")))
    assert issuer.requests[JWKS_PATH] == 2

    clock.advance(KEY_REFETCH_INTERVAL_SECONDS)
    with pytest.raises(InvalidToken):
        await verifier.verify(issuer.sign({"scope": "knock:read"}, key=SigningKey("made-up-again")))
    assert issuer.requests[JWKS_PATH] == 3
    await verifier.aclose()


async def test_a_rotated_key_is_accepted_after_one_refetch(issuer: LoopbackIssuer, clock: FakeClock) -> None:
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.sign({"scope": "knock:read"}))
    clock.advance(KEY_REFETCH_INTERVAL_SECONDS)

    issuer.keys = [SigningKey("key-2", "RS256")]
    access = await verifier.verify(issuer.sign({"scope": "knock:read", "sub": "after-rotation"}))

    assert access.subject == "after-rotation"
    assert issuer.requests[JWKS_PATH] == 2
    await verifier.aclose()


async def test_a_slow_refresh_of_stale_keys_holds_up_only_one_caller(
    issuer: LoopbackIssuer, clock: FakeClock
) -> None:
    verifier = make_verifier(issuer, clock)
    await verifier.verify(issuer.sign({"scope": "knock:read"}))
    clock.monotonic += KEY_MAX_AGE_SECONDS + 1  # the keys are stale; the tokens are not
    issuer.jwks_delay = 2.0
    finished: dict[str, float] = {}

    async def call(name: str) -> None:
        await verifier.verify(issuer.sign({"scope": "knock:read", "sub": name}))
        finished[name] = time.monotonic()

    async with anyio.create_task_group() as calls:
        calls.start_soon(call, "refreshes")
        await anyio.sleep(0.2)  # its refresh is under way
        calls.start_soon(call, "does not wait")

    # The second caller, whose key is held, is answered while the first still waits for the issuer.
    assert finished["does not wait"] < finished["refreshes"]
    assert issuer.requests[JWKS_PATH] == 2
    await verifier.aclose()


async def test_unreachable_keys_make_every_token_wait_and_health_says_why(clock: FakeClock) -> None:
    with LoopbackIssuer() as gone:
        token = gone.sign({"scope": "knock:read"})
        config = make_config(gone)
    verifier = JwtVerifier(config, clock=lambda: clock.now, monotonic=lambda: clock.monotonic)

    with pytest.raises(KeysUnavailable, match="could not be fetched") as raised:
        await verifier.verify(token)

    assert gone.issuer in str(raised.value)
    health = verifier.health()
    assert health["oauth_keys"] == "unavailable"
    assert "did not answer" in health["oauth_problem"]
    await verifier.aclose()


async def test_metadata_naming_another_issuer_is_not_used(issuer: LoopbackIssuer, clock: FakeClock) -> None:
    issuer.metadata_overrides = {"issuer": issuer.issuer + "/"}
    verifier = make_verifier(issuer, clock)

    with pytest.raises(KeysUnavailable):
        await verifier.verify(issuer.sign({"scope": "knock:read"}))

    assert "set KNOCK_MCP_OAUTH_ISSUER to exactly" in verifier.health()["oauth_problem"]
    assert issuer.requests[JWKS_PATH] == 0
    await verifier.aclose()


async def test_a_key_refused_for_its_algorithm_family(issuer: LoopbackIssuer, clock: FakeClock) -> None:
    """An RSA-signed token that names the issuer's EC key cannot pick the algorithm the key is used with."""
    verifier = make_verifier(issuer, clock)
    rsa_key = SigningKey("key-1", "RS256")
    with pytest.raises(InvalidToken, match="does not match"):
        await verifier.verify(issuer.sign({"scope": "knock:read"}, key=rsa_key))
    await verifier.aclose()


def test_protected_resource_metadata_keeps_the_issuer_as_written() -> None:
    config = OAuthConfig(
        issuer="https://tenant.auth0.com/",
        resource="https://mcp.example.com/team/mcp",
        audiences=("https://mcp.example.com/team/mcp",),
        scopes_supported=("knock:read",),
    )
    assert protected_resource_metadata(config) == {
        "resource": "https://mcp.example.com/team/mcp",
        "authorization_servers": ["https://tenant.auth0.com/"],
        "scopes_supported": ["knock:read"],
        "bearer_methods_supported": ["header"],
        "resource_name": "knock-mcp",
    }
    assert (
        resource_metadata_url(config)
        == "https://mcp.example.com/.well-known/oauth-protected-resource/team/mcp"
    )
    assert resource_metadata_paths(config, "/mcp") == {
        "/.well-known/oauth-protected-resource/team/mcp",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    }


def test_challenges_say_what_failed_and_where_to_get_a_token() -> None:
    url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    assert bearer_challenge(url) == f'Bearer resource_metadata="{url}"'
    assert bearer_challenge(url, "invalid_token", 'has "quotes"\\') == (
        f'Bearer resource_metadata="{url}", error="invalid_token", error_description="has quotes"'
    )
    assert bearer_challenge(url, "insufficient_scope", "lacks it", "a b") == (
        f'Bearer resource_metadata="{url}", error="insufficient_scope", error_description="lacks it", '
        'scope="a b"'
    )


def test_configuration_names_every_problem_at_once() -> None:
    options = OptionReader({})
    assert load_oauth_config(options) is None
    assert len(options.problems) == 2
    assert "KNOCK_MCP_OAUTH_ISSUER must be set" in options.problems[0]
    assert "KNOCK_MCP_PUBLIC_URL must be set" in options.problems[1]

    environ = {
        "KNOCK_MCP_OAUTH_ISSUER": "http://idp.example.com/",
        "KNOCK_MCP_PUBLIC_URL": "https://mcp.example.com/mcp?x=1",
        "KNOCK_MCP_OAUTH_SCOPES": 'ok "bad"',
        "KNOCK_MCP_OAUTH_ACCEPT_ANY_TYP": "maybe",
    }
    options = OptionReader(environ)
    assert load_oauth_config(options) is None
    assert [problem.split()[0] for problem in options.problems] == list(environ)
    assert "must use https://" in options.problems[0]
    assert "no query or fragment" in options.problems[1]
    assert "'\"bad\"'" in options.problems[2]


def test_configuration_from_the_environment() -> None:
    options = OptionReader(
        {
            "KNOCK_MCP_OAUTH_ISSUER": "https://login.microsoftonline.com/TENANT/v2.0",
            "KNOCK_MCP_PUBLIC_URL": "https://mcp.example.com/mcp",
            "KNOCK_MCP_OAUTH_AUDIENCE": "11111111-2222-3333-4444-555555555555, api://knock-mcp",
            "KNOCK_MCP_OAUTH_SCOPES": "mcp.access",
            "KNOCK_MCP_OAUTH_SCOPES_SUPPORTED": "api://knock-mcp/mcp.access",
            "KNOCK_MCP_OAUTH_ACCEPT_ANY_TYP": "true",
        }
    )
    config = load_oauth_config(options)
    assert options.problems == []
    assert config == OAuthConfig(
        issuer="https://login.microsoftonline.com/TENANT/v2.0",
        resource="https://mcp.example.com/mcp",
        audiences=("https://mcp.example.com/mcp", "11111111-2222-3333-4444-555555555555", "api://knock-mcp"),
        required_scopes=("mcp.access",),
        scopes_supported=("api://knock-mcp/mcp.access",),
        accept_any_typ=True,
    )
