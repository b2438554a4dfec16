"""What `--auth oauth` costs over `--auth token`: requests/s, latency and server CPU per call at 1, 10
and 50 concurrent clients, the two measured in turn in one run; then the verifier alone.

    python -m benchmarks.bench_http_oauth [--quick]      (from the repository's root)

Both are knock-mcp under `uvicorn --factory knock_mcp.http:create_app` with one worker, serving the
same tools/call load as bench_http.py (one keep-alive connection per client, a Knock request per
call, the fake Knock in a process of its own). The token server checks a shared token; the OAuth
server verifies an ES256 JWT access token from a loopback issuer (tests/support/oauth_issuer.py, keys
made for the run). Each client keeps its token, as a real client does until it expires, so after its
first call the server answers from its cache of verified tokens; the verifier figures below show
what a token costs the first time (signature and claims) and after.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import time
from contextlib import AsyncExitStack, ExitStack
from multiprocessing.connection import Connection
from pathlib import Path

import anyio
import httpx2

from benchmarks.bench_http import (
    CONCURRENCY,
    FULL,
    QUICK,
    Figures,
    Plan,
    Server,
    percentile,
    progress,
    run_fake_knock,
    warm_up_then_alternate,
)
from knock_mcp.oauth.config import OAuthConfig
from knock_mcp.oauth.verifier import JwtVerifier
from tests.support.http_server import HttpServer
from tests.support.oauth_issuer import RESOURCE, LoopbackIssuer

API_KEY = "sk_bench_0000000000000000"
SHARED_TOKEN = "bench-shared-token-0123456789abcdefghij"
MIN_THROUGHPUT_RATIO = 0.9
SCOPE = "knock:read"
APP = Server("knock-mcp", "knock_mcp.http:create_app")
MODES = ("token", "oauth")
VERIFICATIONS = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke test, not figures")
    plan = QUICK if parser.parse_args().quick else FULL
    pipe, child_end = multiprocessing.Pipe()
    knock = multiprocessing.get_context("fork").Process(target=run_fake_knock, args=(child_end,), daemon=True)
    knock.start()
    base_url, knock_pid = pipe.recv()
    try:
        with LoopbackIssuer() as issuer:
            figures = anyio.run(measure, plan, issuer, base_url, knock_pid, pipe)
            first, cached = anyio.run(measure_verifier, issuer)
    finally:
        pipe.send("stop")
        knock.join(10)
    print(render(plan, figures, first, cached))


async def measure(
    plan: Plan, issuer: LoopbackIssuer, base_url: str, knock_pid: int, pipe: Connection
) -> dict[tuple[int, str], Figures]:
    common = {"KNOCK_API_KEY": API_KEY, "KNOCK_BASE_URL": base_url, "KNOCK_MCP_LOG_LEVEL": "warning"}
    environments = {
        "token": common | {"KNOCK_MCP_AUTH": "token", "KNOCK_MCP_AUTH_TOKEN": SHARED_TOKEN},
        "oauth": common
        | {
            "KNOCK_MCP_AUTH": "oauth",
            "KNOCK_MCP_OAUTH_ISSUER": issuer.issuer,
            "KNOCK_MCP_PUBLIC_URL": RESOURCE,
            "KNOCK_MCP_OAUTH_SCOPES": SCOPE,
        },
    }
    figures: dict[tuple[int, str], Figures] = {}
    ids = (f"{n:08x}-0001-4000-8000-000000000000" for n in itertools.count())
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    with ExitStack() as stack:
        running = {
            mode: stack.enter_context(HttpServer(environments[mode], log_dir, command=APP.command(1)))
            for mode in MODES
        }
        for clients in CONCURRENCY:
            limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
            # An hour-long token, so that no run outlives it.
            credentials = {"token": SHARED_TOKEN, "oauth": issuer.sign({"scope": SCOPE}, lifetime=3600)}
            async with AsyncExitStack() as connections:
                pools = {
                    mode: await connections.enter_async_context(
                        httpx2.AsyncClient(
                            limits=limits,
                            timeout=30,
                            headers={"authorization": f"Bearer {credentials[mode]}"},
                        )
                    )
                    for mode in MODES
                }
                progress(f"{clients} client(s): {plan.slices} slices of each")
                await warm_up_then_alternate(
                    plan,
                    MODES,
                    running,
                    pools,
                    clients=clients,
                    ids=ids,
                    knock_pid=knock_pid,
                    pipe=pipe,
                    figures={mode: figures.setdefault((clients, mode), Figures()) for mode in MODES},
                )
    return figures


async def measure_verifier(issuer: LoopbackIssuer) -> tuple[float, float]:
    """Microseconds per verification of a token seen for the first time, and of one seen before."""
    config = OAuthConfig(
        issuer=issuer.issuer, resource=RESOURCE, audiences=(RESOURCE,), required_scopes=(SCOPE,)
    )
    verifier = JwtVerifier(config)
    tokens = [issuer.sign({"scope": SCOPE, "jti": str(number)}) for number in range(VERIFICATIONS)]
    await verifier.verify(tokens[0])  # keys fetched outside the timing
    started = time.perf_counter()
    for token in tokens[1:]:
        await verifier.verify(token)
    first = (time.perf_counter() - started) / (len(tokens) - 1) * 1e6
    started = time.perf_counter()
    for token in tokens[1:]:
        await verifier.verify(token)
    cached = (time.perf_counter() - started) / (len(tokens) - 1) * 1e6
    await verifier.aclose()
    return first, cached


def render(plan: Plan, figures: dict[tuple[int, str], Figures], first: float, cached: float) -> str:
    lines = [
        f"runs: {plan.slices} slices of {plan.slice_seconds:g} s per mode and setting, the two in turn, "
        f"one uvicorn worker each; cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f} at the end",
        "",
    ]
    cells = [
        ("clients", "auth", "req/s", "p50 ms", "p99 ms", "srv ms/call", "oauth/token: req/s", "cpu", "result")
    ]
    for clients in CONCURRENCY:
        token = figures[(clients, "token")]
        for mode in MODES:
            mine = figures[(clients, mode)]
            is_oauth = mode == "oauth"
            ratio = mine.per_second / token.per_second
            cells.append(
                (
                    str(clients),
                    mode,
                    f"{mine.per_second:,.0f}",
                    f"{percentile(mine.latencies_ms, 50):.2f}",
                    f"{percentile(mine.latencies_ms, 99):.2f}",
                    f"{mine.server_cpu_ms_per_call:.3f}",
                    f"{ratio:.2f}x" if is_oauth else "",
                    f"{mine.server_cpu_ms_per_call / token.server_cpu_ms_per_call:.2f}x" if is_oauth else "",
                    ("PASS" if ratio >= MIN_THROUGHPUT_RATIO else "FAIL") if is_oauth else "",
                )
            )
    widths = [max(len(row[column]) for row in cells) for column in range(len(cells[0]))]
    for row in cells:
        lines.append("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    lines.insert(3, "  ".join("-" * width for width in widths))
    lines += [
        "",
        f"target: --auth oauth req/s >= {MIN_THROUGHPUT_RATIO:.2f}x --auth token's at every setting",
        f"verifier (ES256, in process): {first:.0f} us for a token's first use, "
        f"{cached:.1f} us after (cached)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
