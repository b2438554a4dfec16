"""Who may call: the bearer check of each `--auth` mode.

`none` has no check (the guards keep such a server to loopback); `token` compares a shared token in
constant time; `knock-key` takes the caller's own Knock secret key as the bearer token, so that each
request reads Knock with its caller's key (`caller_key`); `oauth` verifies an access token from the
team's authorization server (`knock_mcp.oauth`) and points a caller without one to the metadata
that says where to get it. A refusal says what to send instead and
never repeats what was sent. Checks are async, so that a mode which must fetch keys (OAuth) fits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from pydantic import SecretStr
from starlette.types import Scope

from knock_mcp.http.config import AUTH_TOKEN_VARIABLE, HttpConfig
from knock_mcp.oauth.config import OAuthConfig
from knock_mcp.oauth.metadata import bearer_challenge, resource_metadata_url
from knock_mcp.oauth.verifier import InsufficientScope, InvalidToken, JwtVerifier, KeysUnavailable

# Knock secret keys are `sk_` followed by letters, digits, `_` and `-`; anything else is refused
# before it is ever sent to Knock.
_PLAUSIBLE_SECRET_KEY = re.compile(r"sk_[A-Za-z0-9_.\-]{8,500}")


def caller_key() -> SecretStr | None:
    """The Knock key of the request being served, in `--auth knock-key` mode: the caller's bearer token."""
    token = get_access_token()
    return SecretStr(token.token) if token is not None else None


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


@dataclass(frozen=True)
class Refusal:
    """Why a caller's credentials were refused: the description, which never repeats them."""

    description: str
    error: str | None = "invalid_token"
    status: int = 401
    # With --auth oauth: where clients learn how to get a token (RFC 9728 §5.1), and for a 403, the
    # scopes to ask for.
    resource_metadata: str | None = None
    scope: str | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.status == 503:
            # Not the caller's fault: no challenge, only when to try again.
            return [(b"retry-after", b"30")]
        if self.resource_metadata is not None:
            challenge = bearer_challenge(self.resource_metadata, self.error, self.description, self.scope)
        else:
            # RFC 6750: a request with no credentials gets the challenge without an error code.
            parts = ['realm="knock-mcp"']
            if self.error:
                parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{self.description}"')
            challenge = "Bearer " + ", ".join(parts)
        return [(b"www-authenticate", challenge.encode())]

    def body(self) -> dict[str, Any]:
        return {"error": self.error or "unauthorized", "error_description": self.description}


Authenticator = Callable[[str | None], Awaitable[AuthenticatedUser | Refusal]]
"""Checks the bearer token of one request (None when it sent none): the caller, or why not."""


def authenticator(config: HttpConfig, verifier: JwtVerifier | None) -> Authenticator | None:
    if config.auth == "token":
        assert config.auth_token is not None  # load_http_config guarantees it
        return _shared_token_check(config.auth_token)
    if config.auth == "knock-key":
        return _knock_key_check
    if config.auth == "oauth":
        # load_http_config and KnockMcpApp guarantee both.
        assert config.oauth is not None
        assert verifier is not None
        return _oauth_check(config.oauth, verifier)
    return None


def _oauth_check(oauth: OAuthConfig, verifier: JwtVerifier) -> Authenticator:
    metadata_url = resource_metadata_url(oauth)
    missing = Refusal(
        f"This knock-mcp server signs callers in with OAuth through {oauth.issuer}: connect with an MCP "
        "client that supports OAuth (it finds the way from the resource_metadata in WWW-Authenticate), "
        "or send Authorization: Bearer <access token>.",
        error=None,
        resource_metadata=metadata_url,
    )

    async def check(token: str | None) -> AuthenticatedUser | Refusal:
        if not token:
            return missing
        try:
            return AuthenticatedUser(await verifier.verify(token))
        except InsufficientScope as refusal:
            scopes = " ".join(refusal.required_scopes)
            return Refusal(str(refusal), "insufficient_scope", 403, metadata_url, scopes)
        except InvalidToken as refusal:
            return Refusal(str(refusal), resource_metadata=metadata_url)
        except KeysUnavailable as unavailable:
            return Refusal(str(unavailable), "temporarily_unavailable", 503)

    return check


def _shared_token_check(expected: SecretStr) -> Authenticator:
    expected_bytes = expected.get_secret_value().encode()
    missing = Refusal(
        "This knock-mcp server requires a token: send Authorization: Bearer <token>, the value of "
        f"{AUTH_TOKEN_VARIABLE} on the server (ask its operator).",
        error=None,
    )
    wrong = Refusal(
        f"The bearer token does not match {AUTH_TOKEN_VARIABLE} on the server: check the token "
        "configured in your MCP client."
    )
    # The client id names no one: every caller of a shared token is the same principal.
    user = AuthenticatedUser(AccessToken(token="shared-token", client_id="knock-mcp-token", scopes=[]))

    async def check(token: str | None) -> AuthenticatedUser | Refusal:
        if not token:
            return missing
        # Constant time, so the comparison cannot be timed to guess the token a byte at a time.
        return user if hmac.compare_digest(token.encode(), expected_bytes) else wrong

    return check


async def _knock_key_check(token: str | None) -> AuthenticatedUser | Refusal:
    if not token:
        return Refusal(
            "This knock-mcp server uses each caller's own Knock key: send Authorization: Bearer sk_..., "
            "a secret key from the Knock dashboard (Platform > API keys).",
            error=None,
        )
    if token.startswith("pk_"):
        return Refusal(
            "That is a Knock public key (pk_...), which cannot read bulk operations: send a secret key "
            "(sk_...) from the Knock dashboard, Platform > API keys."
        )
    if not _PLAUSIBLE_SECRET_KEY.fullmatch(token):
        return Refusal(
            "The bearer token is not a Knock secret key (sk_ followed by letters, digits, - and _): "
            "send the secret key alone, with no spaces or quotes."
        )
    # Each key is its own principal; the id is a digest, so it can appear in a log without the key.
    principal = "knock-key-" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return AuthenticatedUser(AccessToken(token=token, client_id=principal, scopes=[]))
