"""Completions (`completion/complete`) for the operation id a person is typing.

Knock has no endpoint that lists bulk operations, so the one help a client such as Claude Desktop
can offer, as someone fills in the `id` of the `retry_failed_items` prompt or of the resource
template `knock://bulk_operations/{id}`, is the ids this server has read recently with the caller's
own key: most recent first, those starting with what has been typed. Ids read with another key are
never offered (the tracker keeps them per key fingerprint).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.types import (
    INVALID_PARAMS,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    PromptReference,
    ResourceTemplateReference,
)

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from knock_mcp.state import ServerState

RETRY_PROMPT = "retry_failed_items"
OPERATION_TEMPLATE = "knock://bulk_operations/{id}"
# The protocol's limit on the values of one completion.
MAX_VALUES = 100


def serve_completions(server: MCPServer[ServerState]) -> None:
    """Serve `completion/complete` on `server`, which declares the `completions` capability.

    MCPServer's own `completion()` decorator calls its function without the request, whose
    caller's key decides which ids may be offered; the low-level server's handler gets it."""
    server._lowlevel_server.add_request_handler("completion/complete", CompleteRequestParams, _complete)


async def _complete(
    ctx: ServerRequestContext[ServerState, Any], params: CompleteRequestParams
) -> CompleteResult:
    ref, argument = params.ref, params.argument
    if isinstance(ref, PromptReference) and ref.name != RETRY_PROMPT:
        raise MCPError(
            INVALID_PARAMS,
            f"knock-mcp has no prompt {ref.name[:100]!r}; its prompt is {RETRY_PROMPT}, whose argument "
            "id can be completed.",
        )
    if isinstance(ref, ResourceTemplateReference) and ref.uri != OPERATION_TEMPLATE:
        raise MCPError(
            INVALID_PARAMS,
            f"knock-mcp has no resource template {ref.uri[:200]!r}; its template is "
            f"{OPERATION_TEMPLATE}, whose id can be completed.",
        )
    if argument.name != "id":
        raise MCPError(
            INVALID_PARAMS,
            f"{argument.name[:100]!r} is not an argument here; the one argument to complete is id.",
        )
    state = ctx.lifespan_context
    typed = argument.value.strip().lower()
    matching = [known for known in state.tracker.recent_ids(state.api_key()) if known.startswith(typed)]
    return CompleteResult(
        completion=Completion(
            values=matching[:MAX_VALUES], total=len(matching), has_more=len(matching) > MAX_VALUES
        )
    )
