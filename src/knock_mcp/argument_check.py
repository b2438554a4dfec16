"""Every tool call's arguments, checked before the tool runs and answered in plain sentences.

The SDK validates arguments itself, but it drops an argument name it does not know (a misspelt
`max_error_item=500` would quietly give the default 50 items), and it words a bad value the way
pydantic does: `1 validation error for wait_for_bulk_operationArguments ... Input should be less
than or equal to 45 [type=less_than_equal, ...] For further information visit https://...`.
This middleware sees every `tools/call` first and answers instead: with the tool's real
parameter names, and with one sentence per bad value, written from the constraints the tool
publishes in its input schema, e.g. `timeout_seconds must be a number of seconds from 0 to 45
(got 100)`. Whether a value is bad is decided by the very types the tool function declares,
read the way the SDK reads them, so the check refuses nothing the tool would take. A refused
call ends before any request to Knock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent
from pydantic import TypeAdapter, ValidationError

from knock_mcp.tool_arguments import expected_value

# A value shown back to the caller is cut to this many characters: it may be hostile and huge.
_MAX_SHOWN_CHARS = 40
# Names listed in a refusal; the rest are counted.
_MAX_NAMES_LISTED = 5
_EXAMPLE_UUID = "123e4567-e89b-12d3-a456-426614174000"


@dataclass(frozen=True)
class ToolParameters:
    """One tool's parameters: names in order, the required ones, what each publishes in its input
    schema, and the validator of each declared type (absent where the tool function is unknown)."""

    names: list[str]
    required: set[str]
    schemas: dict[str, dict[str, Any]]
    validators: dict[str, Callable[[object], object]]

    def refusal(self, arguments: Mapping[str, Any]) -> str | None:
        """Why the call cannot go ahead and what to do instead, in sentences; None when it can."""
        unknown = [argument for argument in arguments if argument not in self.schemas]
        missing = [name for name in self.names if name in self.required and name not in arguments]
        if unknown or missing:
            problems = []
            if unknown:
                problems.append(f"it takes no argument {_names(unknown)}: check the spelling")
            if missing:
                problems.append(f"it needs {_names(missing)}")
            listed = ", ".join(f"{name} (required)" if name in self.required else name for name in self.names)
            return f"{'; '.join(problems)}. Its arguments are: {listed}."
        wrong = [
            f"{name} must be {expected_value(name, self.schemas[name])} (got {_shown(value)})"
            for name, value in arguments.items()
            if not self._accepts(name, value)
        ]
        if not wrong:
            return None
        them = "it" if len(wrong) == 1 else "them"
        return f"{'; '.join(wrong)}. Nothing was sent to Knock: correct {them} and call again."

    def _accepts(self, name: str, value: object) -> bool:
        validate = self.validators.get(name)
        if validate is None:
            return True
        try:
            validate(value)
        except ValidationError:
            return False
        return True


def _shown(value: object) -> str:
    if isinstance(value, str) and len(value) > _MAX_SHOWN_CHARS:
        return f"text of {len(value):,} characters"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    # JSON, so that null, true and a string's control characters read unambiguously.
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= _MAX_SHOWN_CHARS else shown[: _MAX_SHOWN_CHARS - 3] + "..."


def _names(names: list[str]) -> str:
    shown = ", ".join(
        repr(name if len(name) <= 40 else name[:37] + "...") for name in names[:_MAX_NAMES_LISTED]
    )
    more = len(names) - _MAX_NAMES_LISTED
    return shown + (f" and {more:,} more" if more > 0 else "")


def _validator(declared: Any) -> Callable[[object], object]:
    """Validates one argument as the SDK does: a string sent for a parameter that is not plain text
    is first read as JSON when it holds a list, an object, true, false or null (some clients send
    every value as a string), then the declared type, with its constraints, decides."""
    adapter: TypeAdapter[Any] = TypeAdapter(declared)
    base = get_args(declared)[0] if get_origin(declared) is Annotated else declared
    takes_text = base is str

    def validate(value: object) -> object:
        if isinstance(value, str) and not takes_text:
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError):
                parsed = value
            if not isinstance(parsed, str | int | float):
                value = parsed
        return adapter.validate_python(value)

    return validate


class ArgumentCheck:
    """The middleware: refuses a `tools/call` whose arguments the tool cannot take, in plain words.

    `tools` are the tool functions, whose declared parameter types decide which values are
    valid; the server's published input schemas give the names and the words.
    """

    def __init__(self, server: MCPServer[Any], tools: Iterable[Callable[..., Any]]) -> None:
        self._server = server
        self._declared = {tool.__name__: get_type_hints(tool, include_extras=True) for tool in tools}
        self._parameters: dict[str, ToolParameters] | None = None

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params
        if ctx.method != "tools/call" or params is None:
            return await call_next(ctx)
        name, arguments = params.get("name"), params.get("arguments")
        if arguments is None:
            arguments = {}
        parameters = (await self._tool_parameters()).get(name) if isinstance(name, str) else None
        if parameters is None or not isinstance(arguments, Mapping):
            return await call_next(ctx)
        refusal = parameters.refusal(arguments)
        if refusal is None:
            return await call_next(ctx)
        message = f"Error executing tool {name}: {refusal}"
        return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)

    async def _tool_parameters(self) -> dict[str, ToolParameters]:
        if self._parameters is None:
            self._parameters = {}
            for tool in await self._server.list_tools():
                schemas: dict[str, dict[str, Any]] = tool.input_schema.get("properties", {})
                declared = self._declared.get(tool.name, {})
                self._parameters[tool.name] = ToolParameters(
                    names=list(schemas),
                    required=set(tool.input_schema.get("required", [])),
                    schemas=schemas,
                    validators={name: _validator(declared[name]) for name in schemas if name in declared},
                )
        return self._parameters
