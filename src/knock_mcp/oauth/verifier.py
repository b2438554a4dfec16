"""Checking JWT access tokens (RFC 9068) locally, against the keys the issuer publishes.

PyJWT verifies signatures and claims: the SDK already depends on it (with `cryptography`), it binds
each key to one algorithm so a token cannot choose HS256 over an RSA key, and it covers every
asymmetric algorithm issuers use. Its `PyJWKClient` fetches keys with blocking urllib, so keys and
metadata are fetched here with httpx2 on the event loop instead.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import jwt
from mcp.client.auth.utils import build_oauth_authorization_server_metadata_discovery_urls
from mcp.server.auth.provider import AccessToken

from knock_mcp.oauth.config import ACCEPT_ANY_TYP_VARIABLE, ISSUER_VARIABLE, OAuthConfig
from knock_mcp.settings import is_loopback
from knock_mcp.tls import default_tls_context

logger = logging.getLogger(__name__)

# Asymmetric only: with an HMAC algorithm anyone holding the issuer's *public* key could sign.
ACCEPTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_KEY_TYPE_OF_ALGORITHM = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
# RFC 9068 §2.1; media types compare case-insensitively.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# Real Entra tokens with group claims reach ~10 KB; a larger one is refused before it is decoded.
MAX_TOKEN_BYTES = 16 * 1024
# Clocks of the issuer and of this server may differ by this much; applied once, in `_check_times`.
CLOCK_SKEW_SECONDS = 60
# A token naming a key we do not hold makes us refetch the issuer's keys, at most this often, so a
# flood of made-up `kid`s costs the issuer one request per interval; a rotated key waits at most this.
KEY_REFETCH_INTERVAL_SECONDS = 5.0
# Keys are refetched when used after this long, so a key the issuer withdrew stops being trusted.
KEY_MAX_AGE_SECONDS = 3600.0
# Verified tokens kept (digest → claims) so a busy client pays the signature check once per token.
# Only tokens the issuer signed get in; at Entra's ~10 KB with group claims this stays under ~100 MB.
VERIFIED_TOKEN_CACHE_SIZE = 4096
FETCH_TIMEOUT_SECONDS = 10.0


class TokenRefused(Exception):
    """A token this server does not accept; the message says why in words a person can act on."""


class InvalidToken(TokenRefused):
    """401 `invalid_token`: malformed, badly signed, expired, for another server or issuer."""


class InsufficientScope(TokenRefused):
    """403 `insufficient_scope`: a good token that lacks a scope this server requires."""

    def __init__(self, description: str, required_scopes: tuple[str, ...]) -> None:
        super().__init__(description)
        self.required_scopes = required_scopes


class KeysUnavailable(Exception):
    """503: the issuer's keys could not be fetched and none are cached, so no token can be checked."""


Clock = Callable[[], float]


class IssuerKeys:
    """The issuer's signing keys, discovered through its metadata and cached.

    Fetched when first needed, again when a token names a key we do not hold (at most once per
    `KEY_REFETCH_INTERVAL_SECONDS`, however many such tokens arrive) and when they are older than
    `KEY_MAX_AGE_SECONDS`. A failed fetch keeps the keys we had."""

    def __init__(self, issuer: str, client: httpx2.AsyncClient, monotonic: Clock = time.monotonic) -> None:
        self._issuer = issuer
        self._client = client
        self._monotonic = monotonic
        self._jwks_uri: str | None = None
        self._keys: dict[str | None, dict[str, Any]] = {}
        # Parsed keys, by kid and algorithm: parsing one costs more than checking a signature with it.
        self._parsed: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = anyio.Lock()
        self.problem: str | None = None

    @property
    def available(self) -> bool:
        return bool(self._keys)

    async def key_for(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The published key named `kid`, bound to `algorithm`; raises `InvalidToken` or `KeysUnavailable`."""
        stale = self._fetched_at is None or self._monotonic() - self._fetched_at > KEY_MAX_AGE_SECONDS
        # A caller whose key we hold does not queue behind a refresh already under way for staleness
        # (or for someone's unknown kid): with a slow issuer that could take the whole fetch timeout.
        if self._find(kid) is None or (stale and not self._lock.locked()):
            await self.refresh()
        if not self._keys:
            raise KeysUnavailable(
                f"knock-mcp cannot check access tokens right now: the signing keys of {self._issuer} could "
                f"not be fetched ({self.problem}). Try again in a minute; if it goes on, the server's "
                f"operator should check {ISSUER_VARIABLE} and that this server can reach the issuer."
            )
        published = self._find(kid)
        if published is None:
            raise InvalidToken(
                "The access token is signed with a key its issuer does not publish (unknown kid): get a "
                "new token from the authorization server."
            )
        if _KEY_TYPE_OF_ALGORITHM[algorithm[:2]] != published.get("kty") or published.get("alg") not in (
            None,
            algorithm,
        ):
            raise InvalidToken(
                "The access token's algorithm does not match the issuer's key it names: get a new token."
            )
        parsed = self._parsed.get((kid, algorithm))
        if parsed is None:
            try:
                parsed = self._parsed[(kid, algorithm)] = jwt.PyJWK(published, algorithm)
            except jwt.PyJWTError:
                raise InvalidToken(
                    "The issuer's key that the access token names cannot verify it: get a new token."
                ) from None
        return parsed

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None and len(self._keys) == 1:
            # A token may omit `kid` when the issuer publishes a single key.
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch metadata (once) and keys, unless another request did so within the interval."""
        async with self._lock:
            now = self._monotonic()
            if self._attempted_at is not None and now - self._attempted_at < KEY_REFETCH_INTERVAL_SECONDS:
                return
            self._attempted_at = now
            try:
                if self._jwks_uri is None:
                    self._jwks_uri = await self._discover_jwks_uri()
                self._keys = await self._fetch_keys(self._jwks_uri)
                self._parsed = {}
            except _FetchFailed as failure:
                self.problem = str(failure)
                logger.warning("Could not fetch the OAuth issuer's signing keys: %s", failure)
                return
            self._fetched_at = now
            self.problem = None
            logger.info("Fetched %d signing key(s) from %s", len(self._keys), self._jwks_uri)

    async def _discover_jwks_uri(self) -> str:
        """RFC 8414 with path insertion, then OpenID Connect discovery: the order MCP clients use."""
        tried = []
        for url in build_oauth_authorization_server_metadata_discovery_urls(self._issuer, self._issuer):
            tried.append(url)
            metadata = await self._get_json(url, missing_ok=True)
            if metadata is None:
                continue
            if metadata.get("issuer") != self._issuer:
                # RFC 8414 §3.3: metadata that names another issuer must not be used.
                raise _FetchFailed(
                    f"the metadata at {url} names the issuer {str(metadata.get('issuer'))[:200]!r}, not "
                    f"{self._issuer!r}: set {ISSUER_VARIABLE} to exactly the issuer the metadata names"
                )
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not _is_safe_url(jwks_uri):
                raise _FetchFailed(f"the metadata at {url} has no https:// jwks_uri")
            return jwks_uri
        raise _FetchFailed(f"no authorization server metadata at {', '.join(tried)}")

    async def _fetch_keys(self, jwks_uri: str) -> dict[str | None, dict[str, Any]]:
        document = await self._get_json(jwks_uri, missing_ok=False)
        published = document.get("keys") if document is not None else None
        if not isinstance(published, list):
            raise _FetchFailed(f"{jwks_uri} is not a JSON Web Key Set")
        keys = {
            key.get("kid"): key
            for key in published
            if isinstance(key, dict) and key.get("use", "sig") == "sig" and key.get("kty") != "oct"
        }
        if not keys:
            raise _FetchFailed(f"{jwks_uri} publishes no signing keys")
        return keys

    async def _get_json(self, url: str, *, missing_ok: bool) -> dict[str, Any] | None:
        try:
            response = await self._client.get(url, headers={"accept": "application/json"})
        except httpx2.HTTPError as error:
            raise _FetchFailed(f"{url} did not answer: {type(error).__name__}") from None
        if missing_ok and 300 <= response.status_code < 500:
            return None  # not served at this candidate URL: try the next
        if response.status_code != 200:
            raise _FetchFailed(f"{url} answered HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise _FetchFailed(f"{url} did not answer with JSON") from None
        if not isinstance(document, dict):
            raise _FetchFailed(f"{url} did not answer with a JSON object")
        return document


class _FetchFailed(Exception):
    """Metadata or keys could not be had; the message names the URL and what went wrong."""


def _is_safe_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))


class JwtVerifier:
    """Checks JWT access tokens (RFC 9068) from one issuer for this resource, locally."""

    def __init__(
        self,
        config: OAuthConfig,
        client: httpx2.AsyncClient | None = None,
        *,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self._config = config
        # Metadata and keys are public; redirects are not followed (RFC 8414 asks for none).
        self._client = client or httpx2.AsyncClient(
            timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False, verify=default_tls_context()
        )
        self.keys = IssuerKeys(config.issuer, self._client, monotonic)
        self._clock = clock
        self._verified: dict[bytes, AccessToken] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    def health(self) -> dict[str, Any]:
        """For /healthz: whether tokens can be checked, and if not, why (nothing secret)."""
        if self.keys.available:
            return {"oauth_keys": "ok"}
        return {"oauth_keys": "unavailable", "oauth_problem": self.keys.problem or "not fetched yet"}

    async def verify(self, token: str) -> AccessToken:
        """The caller behind `token`; raises `InvalidToken`, `InsufficientScope` or `KeysUnavailable`."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(
                f"The access token is longer than {MAX_TOKEN_BYTES // 1024} KB: ask the authorization "
                "server's administrator to put fewer claims (such as groups) in access tokens."
            )
        digest = hashlib.sha256(token.encode()).digest()
        access = self._verified.get(digest)
        if access is not None:
            assert access.expires_at is not None  # cached only with an expiry
            if self._clock() < access.expires_at + CLOCK_SKEW_SECONDS:
                return self._with_required_scopes(access)
            del self._verified[digest]
        access = await self._verify_signed(token, digest)
        if len(self._verified) >= VERIFIED_TOKEN_CACHE_SIZE:
            # Evict the oldest entry: dicts keep insertion order, and old tokens expire first.
            del self._verified[next(iter(self._verified))]
        self._verified[digest] = access
        return self._with_required_scopes(access)

    async def _verify_signed(self, token: str, digest: bytes) -> AccessToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken(
                "The access token is not a JWT (three base64url parts): send the access token the "
                "authorization server issued, not an ID token, a code or a refresh token."
            ) from None
        algorithm = header.get("alg")
        if algorithm not in ACCEPTED_ALGORITHMS:
            raise InvalidToken(
                "The access token is not signed with an asymmetric algorithm (RS*, PS*, ES* or EdDSA) "
                "and cannot be trusted: get a token from the authorization server this server trusts."
            )
        token_type = str(header.get("typ", "")).lower()
        typed_as_access_token = token_type in ACCESS_TOKEN_TYPES
        if not typed_as_access_token and not self._config.accept_any_typ:
            raise InvalidToken(
                "The token is not typed as an OAuth access token (typ at+jwt, RFC 9068). If the "
                "authorization server types its access tokens JWT, the operator can set "
                f"{ACCEPT_ANY_TYP_VARIABLE}."
            )
        kid = header.get("kid")
        key = await self.keys.key_for(kid if isinstance(kid, str) else None, algorithm)
        claims = self._decode(token, key, algorithm)
        expires_at = self._check_times(claims)
        scopes = _scopes_of(claims)
        if not typed_as_access_token and ("nonce" in claims or "at_hash" in claims or scopes is None):
            raise InvalidToken(
                "The token looks like an OpenID Connect ID token (it has a nonce or at_hash, or no scope), "
                "which proves a sign-in to a client but does not grant access: send the access token."
            )
        audiences = [claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"]
        client_id = next(
            (
                claims[name]
                for name in ("client_id", "azp", "appid", "cid")
                if isinstance(claims.get(name), str)
            ),
            "unknown-client",
        )
        subject = claims.get("sub")
        return AccessToken(
            # The token itself is never kept where a tool, a log or a result could reach it.
            token="sha256:" + digest.hex()[:16],
            client_id=client_id,
            scopes=scopes or [],
            expires_at=expires_at,
            resource=next(audience for audience in self._config.audiences if audience in audiences),
            subject=subject if isinstance(subject, str) else None,
            claims=claims,
        )

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        config = self._config
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=list(config.audiences),
                issuer=config.issuer,
                # Times are checked in `_check_times`, with the injected clock and the skew applied once.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["iss", "aud", "exp"],
                },
            )
        except jwt.InvalidSignatureError:
            raise InvalidToken(
                "The access token's signature does not verify with its issuer's key: it was altered or "
                "signed by someone else. Get a new token from the authorization server."
            ) from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(
                f"The access token was issued by another authorization server: this server accepts only "
                f"tokens whose iss is {config.issuer}."
            ) from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(
                "The access token was not issued for this server: its audience (aud) must include "
                f"{' or '.join(config.audiences)}. The client should request it with "
                f"resource={config.resource}."
            ) from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(
                f"The access token has no {error.claim} claim, which every access token carries "
                "(RFC 9068): get a new token from the authorization server."
            ) from None
        except jwt.PyJWTError:
            raise InvalidToken(
                "The access token could not be decoded as a signed JWT: get a new token from the "
                "authorization server."
            ) from None
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> int:
        now = self._clock()
        expires_at = claims["exp"]
        not_before = claims.get("nbf")
        if not isinstance(expires_at, int | float) or (
            not_before is not None and not isinstance(not_before, int | float)
        ):
            raise InvalidToken("The access token's exp or nbf is not a number of seconds: get a new token.")
        if now >= expires_at + CLOCK_SKEW_SECONDS:
            raise InvalidToken(
                "The access token has expired: the client should get a new one (or refresh it)."
            )
        if not_before is not None and now + CLOCK_SKEW_SECONDS < not_before:
            raise InvalidToken(
                "The access token is not valid yet (nbf is in the future): check the clocks of the "
                "authorization server and of this server."
            )
        return int(expires_at)

    def _with_required_scopes(self, access: AccessToken) -> AccessToken:
        missing = [scope for scope in self._config.required_scopes if scope not in access.scopes]
        if missing:
            advertised = self._config.scopes_supported or self._config.required_scopes
            raise InsufficientScope(
                f"The access token lacks the scope(s) {' '.join(missing)} that this server requires: "
                f"sign in again and grant {' '.join(advertised)}.",
                advertised,
            )
        return access


def _scopes_of(claims: Mapping[str, Any]) -> list[str] | None:
    """`scope` (RFC 9068: space-separated) or `scp` (Entra, Okta: a string or a list); None if neither."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [item for item in value if isinstance(item, str)]
    return None
