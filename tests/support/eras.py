"""The two protocol eras an MCP client of knock-mcp may speak, named as the SDK's `Client(mode=...)`
takes them: "auto" speaks 2026-07-28, "legacy" 2025-11-25.

Tests of the in-process server are parametrized by era (the `mode` fixture). Tests of a server
process loop over `ERAS` against one process instead: the era is the client's choice alone, and
each process start costs over a second of CPU.
"""

ERAS = ("auto", "legacy")
