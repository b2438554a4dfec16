"""What clients are told: the Protected Resource Metadata (RFC 9728) and the `WWW-Authenticate`
challenges (RFC 6750) that point to it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.routes import build_resource_metadata_url
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl

from knock_mcp.oauth.config import UNQUOTABLE, OAuthConfig


def resource_metadata_url(config: OAuthConfig) -> str:
    """RFC 9728 §3.1: /.well-known/oauth-protected-resource inserted before the resource's path."""
    return str(build_resource_metadata_url(AnyHttpUrl(config.resource)))


def resource_metadata_paths(config: OAuthConfig, mcp_path: str) -> frozenset[str]:
    """Where the metadata is served: the path derived from the public URL (which keeps a proxy's
    prefix), the same for the path the app itself serves MCP at (for a proxy that strips its
    prefix), and the root, which MCP clients try last."""
    root = "/.well-known/oauth-protected-resource"
    return frozenset({urlsplit(resource_metadata_url(config)).path, root + mcp_path, root})


def protected_resource_metadata(config: OAuthConfig) -> dict[str, Any]:
    metadata = ProtectedResourceMetadata(
        resource=AnyHttpUrl(config.resource),
        authorization_servers=[AnyHttpUrl(config.issuer)],
        scopes_supported=list(config.scopes_supported) or None,
        bearer_methods_supported=["header"],
        resource_name="knock-mcp",
    ).model_dump(mode="json", exclude_none=True)
    # Clients compare both as plain strings (RFC 8414 §3.3, RFC 9728 §3.3): keep them as configured,
    # whatever URL normalisation the model applies.
    return {**metadata, "resource": config.resource, "authorization_servers": [config.issuer]}


def bearer_challenge(
    resource_metadata_url: str,
    error: str | None = None,
    description: str | None = None,
    scope: str | None = None,
) -> str:
    """A `WWW-Authenticate` value (RFC 6750 §3, RFC 9728 §5.1).

    With no error code, as for a request that carried no token, it carries nothing but where the
    client learns how to get one (RFC 6750 §3.1 says such a request gets no error details)."""
    parameters = [("resource_metadata", resource_metadata_url)]
    if error is not None:
        parameters.append(("error", error))
        if description is not None:
            parameters.append(("error_description", description))
        if scope is not None:
            parameters.append(("scope", scope))
    # The values are this server's own texts, URLs and scope names; dropping what cannot be quoted
    # keeps a header that parses whatever an operator configured.
    return "Bearer " + ", ".join(f'{name}="{UNQUOTABLE.sub("", value)}"' for name, value in parameters)
