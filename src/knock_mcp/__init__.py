"""knock-mcp: an MCP server that tracks and explains Knock bulk operations."""

__version__ = "0.1.0"
