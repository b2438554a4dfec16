"""CI: build knock-mcp's MCP Bundle, then install and start it the way Claude Desktop does.

1. Build the bundle twice with .ci/build_bundle.py (the pinned `mcpb validate` and `mcpb pack`)
   and unpack both with `mcpb unpack`: the two trees must be the same, and hold only what the
   bundle should (no `.venv`, `__pycache__` or tests).
2. For each set of user settings, substitute them into the manifest's command, arguments and
   environment with the function the mcpb package exports for hosts (bundle/mcp_config.mjs), as
   Claude Desktop does when it starts an extension; check that an unset setting arrives as "" and
   never as a literal `${user_config...}`.
3. Start the resolved command (`uv run ...`, with uv from PyPI) over stdio with the MCP client:
   with the demo turned on, list the tools and the prompt the manifest declares and call
   summarize_bulk_operation; with nothing set, see the call explain that the key is missing.

uv resolves knock-mcp's dependencies from PyPI at the first start, as it does on a user's machine;
it uses the Python already installed here (`UV_PYTHON_DOWNLOADS=never`), where Claude Desktop
would download one. Everything is written to one temporary directory, removed at the end.

Run it with the CI virtual environment's Python: `.venv/bin/python .ci/bundle_check.py`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from build_bundle import (
    BUNDLE,
    ENTRY_POINT,
    PACKAGE,
    PROJECT_FILES,
    BuildFailed,
    build,
    mcpb,
    run,
    tool_environment,
)
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

DEMO_ID = "de300000-0000-4000-8000-000000000002"
FAKE_KEY = "sk_test_bundle_check_not_a_real_key"
# The first start installs the dependencies with uv; on a busy machine that takes a while.
START_TIMEOUT = 300


class CheckFailed(Exception):
    """The bundle did not build, unpack or start as a Claude Desktop user would need."""


def main() -> int:
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="knock-mcp-bundle-check-") as scratch:
            work = Path(scratch)
            unpacked = _step("build twice and unpack: the same tree", lambda: _build_and_unpack(work))
            manifest: dict[str, Any] = json.loads((unpacked / "manifest.json").read_text())
            uv_bin = _step("install uv", lambda: _install_uv(work))
            demo = _step("substitute the demo setting", lambda: _mcp_config(unpacked, {"demo": True}))
            unset = _step("substitute no settings at all", lambda: _mcp_config(unpacked, {}))
            keyed = _mcp_config(unpacked, {"knock_api_key": FAKE_KEY, "knock_branch": "staging"})
            _expect(keyed["env"]["KNOCK_API_KEY"] == FAKE_KEY, "the key setting did not reach KNOCK_API_KEY")
            _expect(
                keyed["env"]["KNOCK_BRANCH"] == "staging", "the branch setting did not reach KNOCK_BRANCH"
            )
            _step(
                "start the demo over stdio: tools, prompt and a call",
                lambda: anyio.run(_call_demo, demo, manifest, uv_bin, work),
            )
            _step(
                "start with nothing set: the call explains the missing key",
                lambda: anyio.run(_call_unset, unset, uv_bin, work),
            )
    except (CheckFailed, BuildFailed) as failure:
        print(f"bundle check FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"bundle check passed in {time.monotonic() - started:.1f} s")
    return 0


def _step(title: str, action: Any) -> Any:
    started = time.monotonic()
    result = action()
    print(f"  ok  {title} ({time.monotonic() - started:.1f} s)")
    return result


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise CheckFailed(problem)


def _build_and_unpack(work: Path) -> Path:
    trees = []
    for attempt in ("first", "second"):
        bundle = build(work / attempt)
        unpacked = work / f"{attempt}-unpacked"
        run([mcpb(), "unpack", bundle, unpacked])
        trees.append({path.relative_to(unpacked).as_posix(): path.read_bytes() for path in _files(unpacked)})
    first, second = trees
    _expect(first == second, "two builds from the same sources unpack to different trees")
    sources = set(run(["git", "ls-files", "--", PACKAGE]).splitlines())
    expected = {*PROJECT_FILES, "manifest.json", ENTRY_POINT, *sources}
    _expect(
        set(first) == expected,
        f"the bundle holds {sorted(set(first) ^ expected)} beyond or short of its files",
    )
    return work / "first-unpacked"


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def _install_uv(work: Path) -> Path:
    venv = work / "uv-venv"
    run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "uv>=0.5"])
    return venv / "bin"


def _mcp_config(unpacked: Path, user_config: dict[str, Any]) -> dict[str, Any]:
    printed = run(["node", BUNDLE / "mcp_config.mjs", unpacked, json.dumps(user_config)], cwd=BUNDLE)
    config = json.loads(printed)
    _expect(config is not None, f"the host would not start the server with the settings {user_config}")
    _expect("${" not in json.dumps(config), f"a setting stayed unsubstituted: {config}")
    return dict(config)


def _server(config: dict[str, Any], uv_bin: Path, work: Path) -> StdioServerParameters:
    """The resolved command, started with this machine's environment plus the manifest's, as a
    host does; any KNOCK_ variable of the CI machine is left out so that only the bundle's count."""
    inherited = {name: value for name, value in tool_environment().items() if not name.startswith("KNOCK_")}
    env = inherited | {
        "PATH": f"{uv_bin}{os.pathsep}{inherited['PATH']}",
        "UV_CACHE_DIR": str(work / "uv-cache"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    return StdioServerParameters(command=config["command"], args=config["args"], env=env | config["env"])


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def _call_demo(config: dict[str, Any], manifest: dict[str, Any], uv_bin: Path, work: Path) -> None:
    with (work / "demo-stderr.log").open("w") as errlog, anyio.fail_after(START_TIMEOUT):
        async with Client(stdio_client(_server(config, uv_bin, work), errlog=errlog)) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
            result = await client.call_tool("summarize_bulk_operation", {"id": DEMO_ID})
    _expect(
        tools == {tool["name"] for tool in manifest["tools"]}, f"the server lists {tools}, not the manifest's"
    )
    for declared in manifest["prompts"]:
        served = prompts.get(declared["name"])
        _expect(served is not None, f"the server has no prompt {declared['name']}")
        arguments = [argument.name for argument in (served.arguments if served else None) or []]
        _expect(arguments == declared["arguments"], f"{declared['name']} takes {arguments}")
    _expect(
        not result.is_error and f"Operation {DEMO_ID}." in _text(result),
        f"the demo call said: {_text(result)}",
    )


async def _call_unset(config: dict[str, Any], uv_bin: Path, work: Path) -> None:
    with (work / "unset-stderr.log").open("w") as errlog, anyio.fail_after(START_TIMEOUT):
        async with Client(stdio_client(_server(config, uv_bin, work), errlog=errlog)) as client:
            result = await client.call_tool("summarize_bulk_operation", {"id": DEMO_ID})
    _expect(
        result.is_error and "KNOCK_API_KEY is not set" in _text(result),
        f"with no settings the call said: {_text(result)}",
    )


if __name__ == "__main__":
    sys.exit(main())
