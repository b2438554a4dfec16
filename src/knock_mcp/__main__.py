"""`python -m knock_mcp` runs the same command line as the `knock-mcp` script."""

from knock_mcp.cli import main

main()
