"""Reading what a tool call returned."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, TextContent

from knock_mcp.summary import WaitResult


def text(result: CallToolResult) -> str:
    """The text of a tool result, which is always exactly one text block (answer or error alike)."""
    assert len(result.content) == 1, result.content
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text


def outcome(result: CallToolResult) -> WaitResult:
    """What `wait_for_bulk_operation` answered; the call must not have failed."""
    assert not result.is_error, result.content
    return WaitResult.model_validate(result.structured_content)


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a tool result; the call must not have failed."""
    assert not result.is_error, result.content
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content
