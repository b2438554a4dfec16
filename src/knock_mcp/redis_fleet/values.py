"""Where the fleet's values live in Redis, and how they are sealed.

Every value that may be served to a caller (snapshots, final operations, published news) is Knock's
JSON, zlib-compressed, signed with the fleet secret over its address, capped in size and validated
on read; anything else is refused and fetched from Knock instead. Keys name a Knock key only by its
HMAC under the fleet secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import struct
import time
import zlib
from dataclasses import dataclass

import anyio
from pydantic import SecretStr, ValidationError

from knock_mcp.fleet import Address, SharedAnswer, key_fingerprint
from knock_mcp.knock_client import MAX_RESPONSE_BYTES, VALIDATE_IN_THREAD_BYTES
from knock_mcp.models import BulkOperation

logger = logging.getLogger(__name__)

# A 100,000-item operation (6 MB of JSON) compresses to about 400 KB; nothing larger is shared.
MAX_SHARED_BYTES = 4 * 1024 * 1024

_MAGIC = b"KMF1"
_SIGNATURE_BYTES = 32
_HEADER = struct.Struct("!d16s")  # when Knock answered (wall clock), which process shared it


class _Refused(Exception):
    """A value read from Redis that is not to be served; the message says why."""


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one address, and the label its values are signed over."""

    snapshot: str
    final: str
    fetching: str
    lease: str
    loop: str
    deadlines: str
    news: bytes
    label: bytes


class SharedValues:
    """Names and seals what this process shares under the fleet `secret`; `token` marks what it
    shared itself."""

    def __init__(self, secret: bytes, token: bytes) -> None:
        self._secret = secret
        self._token = token
        self.namespace = hmac.new(secret, b"knock-mcp fleet", hashlib.sha256).hexdigest()[:16]
        self.prefix = f"knock-mcp:{self.namespace}:"
        # Values refused so far, for /healthz.
        self.refused = 0

    def fingerprint(self, key: SecretStr | None) -> bytes:
        return key_fingerprint(self._secret, key)

    def keys(self, address: Address) -> Keys:
        fingerprint, operation_id = address
        base = f"{self.prefix}{fingerprint.hex()[:32]}:{operation_id}:"
        return Keys(
            snapshot=base + "snapshot",
            final=base + "final",
            fetching=base + "fetching",
            lease=base + "lease",
            loop=base + "loop",
            deadlines=base + "deadlines",
            news=(base + "news").encode(),
            label=f"{fingerprint.hex()}:{operation_id}".encode(),
        )

    def budget_keys(self, secret: str) -> tuple[bytes, list[str]]:
        """The fingerprint of a Knock key, and the keys of its next turn and its hold-off."""
        fingerprint = self.fingerprint(SecretStr(secret))
        base = f"{self.prefix}{fingerprint.hex()[:32]}:"
        return fingerprint, [base + "next-turn", base + "hold-until"]

    def encode(self, keys: Keys, operation: BulkOperation, fetched_at: float) -> bytes | None:
        body = zlib.compress(operation.model_dump_json(by_alias=True).encode(), 1)
        header = _HEADER.pack(fetched_at, self._token)
        signature = hmac.new(self._secret, keys.label + b"\n" + header + body, hashlib.sha256).digest()
        envelope = _MAGIC + signature + header + body
        if len(envelope) > MAX_SHARED_BYTES:
            logger.info(
                "Operation %s is too large to share through Redis; each process reads it itself", operation.id
            )
            return None
        return envelope

    async def decode(self, keys: Keys, envelope: bytes, *, skip_own: bool = False) -> SharedAnswer | None:
        """The answer in `envelope` if it is intact, signed with this fleet's secret for this address,
        and a valid operation; None (and a warning) otherwise. With `skip_own`, None for this
        process's own news."""
        try:
            return await self._open(keys, envelope, skip_own)
        except _Refused as refusal:
            self.refused += 1
            # Only someone with write access to Redis can cause this: say so, but not once per call.
            if math.log2(self.refused).is_integer():
                logger.warning(
                    "Refused a value read from Redis (%s; %d so far) and asked Knock instead: someone "
                    "altered it, or wrote it with another KNOCK_MCP_FLEET_SECRET.",
                    refusal,
                    self.refused,
                )
            return None

    async def _open(self, keys: Keys, envelope: bytes, skip_own: bool) -> SharedAnswer | None:
        start = len(_MAGIC) + _SIGNATURE_BYTES
        if len(envelope) > MAX_SHARED_BYTES or not envelope.startswith(_MAGIC):
            raise _Refused("it is not in knock-mcp's format, or too large")
        signature, signed = envelope[len(_MAGIC) : start], envelope[start:]
        expected = hmac.new(self._secret, keys.label + b"\n" + signed, hashlib.sha256).digest()
        if len(signed) < _HEADER.size or not hmac.compare_digest(signature, expected):
            raise _Refused("its signature does not match this fleet's secret")
        fetched_at, sender = _HEADER.unpack_from(signed)
        if skip_own and sender == self._token:
            return None
        inflate = zlib.decompressobj()
        try:
            text = inflate.decompress(signed[_HEADER.size :], MAX_RESPONSE_BYTES)
        except zlib.error:
            raise _Refused("it does not decompress") from None
        if inflate.unconsumed_tail or not inflate.eof:
            raise _Refused("it is truncated, or expands beyond what knock-mcp reads from Knock")
        try:
            if len(text) < VALIDATE_IN_THREAD_BYTES:
                operation = BulkOperation.model_validate_json(text)
            else:
                operation = await anyio.to_thread.run_sync(BulkOperation.model_validate_json, text)
        except ValidationError:
            raise _Refused("it is not a valid bulk operation") from None
        if not keys.label.endswith(f":{operation.id}".encode()):
            raise _Refused("it is about another operation")
        return SharedAnswer(operation, age=max(0.0, time.time() - fetched_at))


def fresh_enough(found: SharedAnswer | None, fresh_for: float) -> SharedAnswer | None:
    """`found` if it may be served: final, or no older than `fresh_for`."""
    if found is not None and (found.operation.status.is_final or found.age <= fresh_for):
        return found
    return None
