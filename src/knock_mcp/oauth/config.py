"""`--auth oauth`'s options: which authorization server to trust, and what a token must carry.

    KNOCK_MCP_OAUTH_ISSUER              the issuer, exactly as the authorization server writes it
    KNOCK_MCP_PUBLIC_URL                the URL clients use for /mcp: the resource and the audience
    KNOCK_MCP_OAUTH_AUDIENCE            further accepted audiences, comma-separated (optional)
    KNOCK_MCP_OAUTH_SCOPES              scopes every token must carry, space-separated (optional)
    KNOCK_MCP_OAUTH_SCOPES_SUPPORTED    scopes clients should request, if they differ (Entra: api://...)
    KNOCK_MCP_OAUTH_ACCEPT_ANY_TYP      accept JWTs not typed at+jwt (many providers type them JWT)

Imports neither the SDK nor an HTTP stack, so the HTTP options can be read without loading them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from knock_mcp.options import OptionReader, parse_switch
from knock_mcp.settings import is_loopback

ISSUER_VARIABLE = "KNOCK_MCP_OAUTH_ISSUER"
PUBLIC_URL_VARIABLE = "KNOCK_MCP_PUBLIC_URL"
AUDIENCE_VARIABLE = "KNOCK_MCP_OAUTH_AUDIENCE"
SCOPES_VARIABLE = "KNOCK_MCP_OAUTH_SCOPES"
SCOPES_SUPPORTED_VARIABLE = "KNOCK_MCP_OAUTH_SCOPES_SUPPORTED"
ACCEPT_ANY_TYP_VARIABLE = "KNOCK_MCP_OAUTH_ACCEPT_ANY_TYP"
# What a quoted-string in a challenge cannot hold (RFC 9110 §5.6.4 without escapes).
UNQUOTABLE = re.compile(r'["\\\x00-\x1f\x7f]')
# RFC 6749 §3.3: a scope is printable ASCII without spaces, quotes or backslashes.
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


@dataclass(frozen=True)
class OAuthConfig:
    """What a token must be to open this server, and what the server tells clients about it."""

    issuer: str
    resource: str
    audiences: tuple[str, ...]
    required_scopes: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    accept_any_typ: bool = False


def load_oauth_config(options: OptionReader) -> OAuthConfig | None:
    """Read the `KNOCK_MCP_OAUTH_*` variables and `KNOCK_MCP_PUBLIC_URL`; what is wrong goes to `options`."""
    before = len(options.problems)

    def required(variable: str, explanation: str) -> str:
        problems = len(options.problems)
        value = options.read(variable, _secure_url, "")
        if not value and len(options.problems) == problems:
            options.problems.append(f"{variable} must be set with --auth oauth: {explanation}")
        return value

    issuer = required(
        ISSUER_VARIABLE,
        "the issuer of your authorization server, exactly as its metadata writes it (Auth0: "
        "https://TENANT.auth0.com/ with the slash; Keycloak: https://HOST/realms/REALM); see docs/oauth.md",
    )
    resource = required(
        PUBLIC_URL_VARIABLE,
        "the URL clients use for this server's MCP endpoint, such as https://mcp.example.com/mcp; tokens "
        "must be issued for it",
    )
    none: tuple[str, ...] = ()
    extra_audiences = options.read(AUDIENCE_VARIABLE, _audiences, none)
    required_scopes = options.read(SCOPES_VARIABLE, _scopes, none)
    scopes_supported = options.read(SCOPES_SUPPORTED_VARIABLE, _scopes, none) or required_scopes
    accept_any_typ = options.read(ACCEPT_ANY_TYP_VARIABLE, parse_switch, False)
    if len(options.problems) > before:
        return None
    return OAuthConfig(
        issuer=issuer,
        resource=resource,
        audiences=(resource, *extra_audiences),
        required_scopes=required_scopes,
        scopes_supported=scopes_supported,
        accept_any_typ=accept_any_typ,
    )


def _secure_url(raw: str) -> str:
    parts = urlsplit(raw)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or UNQUOTABLE.search(raw)
        or " " in raw
    ):
        raise ValueError(f"must be an https:// URL with no query or fragment, not {raw!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"must use https:// ({raw!r} is plain HTTP off this machine, where tokens and keys could be "
            "read or replaced on the way); http:// is accepted only on loopback, for testing"
        )
    return raw


def _audiences(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _scopes(raw: str) -> tuple[str, ...]:
    scopes = tuple(raw.split())
    bad = [scope for scope in scopes if not _SCOPE.fullmatch(scope)]
    if bad:
        raise ValueError(
            "must list scopes separated by spaces, each printable ASCII without quotes or backslashes, "
            f"not {' '.join(bad)!r}"
        )
    return scopes
