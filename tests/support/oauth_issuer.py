"""A minimal authorization server on loopback for the verifier's tests: metadata, keys, signed tokens,
and the hostile tokens every --auth oauth server must refuse.

    with LoopbackIssuer() as issuer:
        token = issuer.sign({"aud": RESOURCE, "scope": "knock:read"})

It publishes what a real issuer publishes (RFC 8414 / OpenID Connect metadata and a JWKS, with the
issuer's path, as Keycloak's realms have one) and counts the requests for each, so a test can tell
how often knock-mcp fetched the keys. It signs tokens with keys generated for the run; the tests
that need a real authorization server's whole flow use oidc-provider (see oidc_provider.py).
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from knock_mcp.oauth.verifier import InsufficientScope, InvalidToken

RESOURCE = "http://127.0.0.1:8000/mcp"
ISSUER_PATH = "/realms/team"


class SigningKey:
    """A private key with the `kid` and algorithm it is published under."""

    def __init__(self, kid: str, algorithm: str = "ES256") -> None:
        self.kid = kid
        self.algorithm = algorithm
        if algorithm.startswith("ES"):
            curve_key = ec.generate_private_key(ec.SECP256R1())
            self.private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = curve_key
            public = json.loads(ECAlgorithm.to_jwk(curve_key.public_key()))
            private = json.loads(ECAlgorithm.to_jwk(curve_key))
        else:
            rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.private = rsa_key
            public = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
            private = json.loads(RSAAlgorithm.to_jwk(rsa_key))
        published = {"kid": kid, "alg": algorithm, "use": "sig"}
        self.public_jwk: dict[str, Any] = {**public, **published}
        # The whole key as a JWK, as oidc-provider takes it.
        self.private_jwk: dict[str, Any] = {**private, **published}


class LoopbackIssuer:
    """Serves `<issuer>/.well-known/openid-configuration` (and only that discovery URL) and the JWKS."""

    def __init__(self) -> None:
        self.keys = [SigningKey("key-1")]
        self.requests: Counter[str] = Counter()
        self.metadata_overrides: dict[str, Any] = {}
        # Seconds the JWKS takes to answer, as a slow issuer's would.
        self.jwks_delay = 0.0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = self.base_url + ISSUER_PATH

    @property
    def key(self) -> SigningKey:
        return self.keys[0]

    def __enter__(self) -> LoopbackIssuer:
        # A short poll, so that `shutdown` returns within 50 ms instead of the default 0.5 s.
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        lifetime: int = 300,
    ) -> str:
        """A token from this issuer for `RESOURCE`, valid `lifetime` s from now, unless `claims` differ."""
        key = key or self.key
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": RESOURCE,
            "sub": "user-1",
            "client_id": "client-1",
            "iat": now,
            "exp": now + lifetime,
            **claims,
        }
        return jwt.encode(
            payload,
            key.private,
            algorithm=key.algorithm,
            headers={"typ": "at+jwt", "kid": key.kid, **(headers or {})},
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests[self.path] += 1
                if self.path == ISSUER_PATH + "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": issuer.issuer,
                        "jwks_uri": issuer.base_url + ISSUER_PATH + "/jwks",
                        "token_endpoint": issuer.base_url + ISSUER_PATH + "/token",
                        **issuer.metadata_overrides,
                    }
                elif self.path == ISSUER_PATH + "/jwks":
                    time.sleep(issuer.jwks_delay)
                    body = {"keys": [key.public_jwk for key in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests read `requests` instead."""

        return Handler


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join((part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(signature)))


def hostile_tokens(issuer: LoopbackIssuer) -> dict[str, tuple[str, type[Exception], str]]:
    """Each hostile token of the issue, with the refusal it must meet and a word of its description."""
    now = int(time.time())
    good_claims = {"iss": issuer.issuer, "aud": RESOURCE, "exp": now + 300, "scope": "knock:read"}
    public_pem = issuer.key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    stranger = SigningKey("key-1")  # same kid as the issuer's, but nobody published it
    return {
        "alg none": (
            unsigned({"alg": "none", "typ": "at+jwt", "kid": "key-1"}, good_claims),
            InvalidToken,
            "asymmetric",
        ),
        "HS256 with the public key as secret": (
            unsigned(
                {"alg": "HS256", "typ": "at+jwt", "kid": "key-1"},
                good_claims,
                hmac.new(public_pem, b"x", "sha256").digest(),
            ),
            InvalidToken,
            "asymmetric",
        ),
        "wrong issuer": (
            issuer.sign({"iss": "https://evil.example.com/"}),
            InvalidToken,
            "another authorization",
        ),
        "wrong audience": (issuer.sign({"aud": "https://other.example.com/mcp"}), InvalidToken, "audience"),
        "expired": (issuer.sign({"scope": "knock:read", "exp": now - 3600}), InvalidToken, "expired"),
        "not yet valid": (
            issuer.sign({"scope": "knock:read", "nbf": now + 3600}),
            InvalidToken,
            "not valid yet",
        ),
        "missing scope": (issuer.sign({"scope": "profile"}), InsufficientScope, "knock:read"),
        "unknown kid": (
            issuer.sign({"scope": "knock:read"}, key=SigningKey("made-up")),
            InvalidToken,
            "does not publish",
        ),
        "key no one published": (
            issuer.sign({"scope": "knock:read"}, key=stranger),
            InvalidToken,
            "signature",
        ),
        "ID token typed JWT": (
            issuer.sign({"nonce": "n", "at_hash": "h", "aud": RESOURCE}, headers={"typ": "JWT"}),
            InvalidToken,
            "typ",
        ),
        "malformed": ("not.a.jwt", InvalidToken, "not a JWT"),
        "17 KB": (issuer.sign({"scope": "knock:read", "pad": "x" * 17 * 1024}), InvalidToken, "16 KB"),
    }


HOSTILE_NAMES = [
    "alg none",
    "HS256 with the public key as secret",
    "wrong issuer",
    "wrong audience",
    "expired",
    "not yet valid",
    "missing scope",
    "unknown kid",
    "key no one published",
    "ID token typed JWT",
    "malformed",
    "17 KB",
]
