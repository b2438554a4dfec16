"""Each tool's arguments, known without the SDK: the types the tool functions declare, the input
schema the server publishes for each tool, and what an argument takes, in words.

`tools` declares its functions' parameters with these types, and `argument_check` words its
refusals with `expected_value`. The command line reads this module to answer `call --help`, an
unknown tool or a malformed `name=value` without importing `mcp`, which costs most of a second of
CPU: `TOOL_ARGUMENTS` repeats each tool function's parameters for that, and a test holds the input
schemas built here equal to those the server publishes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, create_model

from knock_mcp.models import MAX_ITEMS_PER_PAGE, MAX_TEXT_CHARS
from knock_mcp.views import DEFAULT_MAX_ERROR_ITEMS

# Chat clients commonly abandon a tool call after 60 s (the MCP TypeScript SDK's default request
# timeout). A wait of at most 45 s leaves time for the last read and the answer to travel back; a
# caller who needs longer calls again, and the shared poll loop makes that free.
MAX_WAIT_SECONDS = 45

OperationId = Annotated[
    str,
    Field(
        description=(
            "The bulk operation's id, a UUID such as 123e4567-e89b-12d3-a456-426614174000: the `id` "
            "in the response of the Knock bulk endpoint that started the job (e.g. POST "
            "/v1/users/bulk/identify), or the last part of its progress_path."
        ),
        json_schema_extra={"format": "uuid"},
    ),
]


def _refusing_booleans(kind: str) -> BeforeValidator:
    """JSON true/false would pass as 1/0; a number sent as a string ("50") is fine."""

    def refuse(value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"must be {kind}, not true or false")
        return value

    return BeforeValidator(refuse)


# The validator comes after Field so that it wraps the constrained integer: in the other order
# pydantic publishes the range as "ge"/"le", which JSON Schema (and so the model) does not know.
MaxErrorItems = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_ITEMS_PER_PAGE,
        description=(
            f"How many failed items to include, from 0 to {MAX_ITEMS_PER_PAGE:,} (default "
            f"{DEFAULT_MAX_ERROR_ITEMS}). Raise it when you need the failed ids, e.g. to resubmit them."
        ),
    ),
    _refusing_booleans("a whole number"),
]
ErrorItemsOffset = Annotated[
    int,
    Field(
        ge=0,
        description=(
            "Position in Knock's list of failed items to start from (default 0, the first). To page "
            "through a long list, pass the offset that the previous result's `note` gives."
        ),
    ),
    _refusing_booleans("a whole number"),
]


WaitTimeout = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description=(
            f"How long to wait for the job to finish, in seconds, from 0 to {MAX_WAIT_SECONDS} (default "
            f"{MAX_WAIT_SECONDS}). 0 answers at once with the current state."
        ),
    ),
    _refusing_booleans("a number of seconds"),
]


# No collection Knock reports is longer than the model allows; a longer filter could match nothing,
# and would be echoed back (in `collection` and the note) at whatever size it came.
Collection = Annotated[
    str | None,
    Field(
        max_length=MAX_TEXT_CHARS,
        description=(
            "Only this object collection, e.g. 'projects' (from counts_by_collection); leave it out for all. "
            "Users and tenants have no collection."
        ),
    ),
]
Cursor = Annotated[
    str | None,
    Field(
        # A cursor holds an offset and a collection name (at most 2,000 characters) in base64.
        max_length=4 * MAX_TEXT_CHARS,
        description="The next_cursor of the previous result, unchanged; leave it out for the first page.",
    ),
]
PageLimit = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_ITEMS_PER_PAGE,
        description=(
            f"How many ids per page, from 1 to {MAX_ITEMS_PER_PAGE:,} (default {MAX_ITEMS_PER_PAGE:,}, the "
            "most one bulk request takes)."
        ),
    ),
    _refusing_booleans("a whole number"),
]


# Each tool's parameters after its context, in the order its function declares them and the tools in
# the order clients list them, as pydantic fields: (type, default), with `...` for a required one.
TOOL_ARGUMENTS: dict[str, dict[str, Any]] = {
    "get_bulk_operation": {
        "id": (OperationId, ...),
        "max_error_items": (MaxErrorItems, DEFAULT_MAX_ERROR_ITEMS),
        "error_items_offset": (ErrorItemsOffset, 0),
    },
    "summarize_bulk_operation": {"id": (OperationId, ...)},
    "wait_for_bulk_operation": {"id": (OperationId, ...), "timeout_seconds": (WaitTimeout, MAX_WAIT_SECONDS)},
    "list_failed_items": {
        "id": (OperationId, ...),
        "collection": (Collection, None),
        "cursor": (Cursor, None),
        "limit": (PageLimit, MAX_ITEMS_PER_PAGE),
    },
}


@cache
def input_schema(tool: str) -> dict[str, Any]:
    """The JSON Schema of `tool`'s arguments, built as the SDK builds it from the tool function."""
    arguments: type[BaseModel] = create_model(f"{tool}Arguments", **TOOL_ARGUMENTS[tool])
    return arguments.model_json_schema(by_alias=True)


def expected_value(name: str, schema: Mapping[str, Any]) -> str:
    """What a parameter takes, in words, from its JSON Schema: "a whole number from 1 to 1,000",
    "a number of seconds from 0 to 45", "text of at most 2,000 characters, or null to leave it out"."""
    options = [option for option in schema.get("anyOf", [schema]) if option.get("type") != "null"]
    nullable = len(options) < len(schema.get("anyOf", [schema]))
    described = " or ".join(_one_type(name, option) for option in options) or "a JSON value"
    return f"{described}, or null to leave it out" if nullable else described


def _one_type(name: str, schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if kind == "integer":
        return "a whole number" + _bounds(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        noun = "a number of seconds" if name.endswith("_seconds") else "a number"
        return noun + _bounds(schema.get("minimum"), schema.get("maximum"))
    if kind == "string":
        noun = (
            "a UUID such as 123e4567-e89b-12d3-a456-426614174000"
            if schema.get("format") == "uuid"
            else "text"
        )
        longest = schema.get("maxLength")
        return noun + (f" of at most {longest:,} characters" if longest is not None else "")
    if kind == "boolean":
        return "true or false"
    return f"a JSON {kind}" if kind else "a JSON value"


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {_number(low)} to {_number(high)}"
    if low is not None:
        return f" of at least {_number(low)}"
    if high is not None:
        return f" of at most {_number(high)}"
    return ""


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"
