"""The TLS context every outgoing HTTPS client of the process shares: httpx's default, built once.

Building it loads the system's CA bundle, ~37 ms CPU; an `SSLContext` is made to be shared, so each
client built later (one per server, one per token verifier, hundreds in a test run) reuses it.
"""

from __future__ import annotations

import ssl
from functools import cache

import httpx2


@cache
def default_tls_context() -> ssl.SSLContext:
    return httpx2.create_ssl_context()
