"""knock-mcp as an OAuth 2.1 resource server (`--auth oauth`): it trusts a team's authorization server.

knock-mcp issues no tokens and keeps no users. A caller brings a JWT access token from the
authorization server named by `KNOCK_MCP_OAUTH_ISSUER`; `verifier` checks it locally against that
server's published keys and answers with the caller's `AccessToken`, or with an error whose text
says what failed (never the token itself). `metadata` writes the Protected Resource Metadata that
tells a client where to get a token and the challenges that point to it; `config` reads the
options. Nothing here knows ASGI: `knock_mcp.http` wires it into the app.
"""
