"""The MCP Bundle's entry point: Claude Desktop's uv runtime runs it in the bundle's project
environment, where `uv` has installed knock-mcp from the bundled pyproject.toml and sources.

It is a file of its own, outside the package: run as a script, the package's directory would come
first on `sys.path`, and the package's own `http` would shadow the standard library's.
"""

from knock_mcp.cli import main

main()
