"""The cache of final operations: a completed or failed operation never changes, so a repeat
question about it costs no Knock call. Bounded by count, by an estimate of memory and by age."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from knock_mcp.fleet import Address
from knock_mcp.models import BulkOperation

logger = logging.getLogger(__name__)

# Measured: an operation's validated fields hold about 12 bytes of Python objects per byte of their
# JSON. Its failed items, packed, say how much they hold themselves (`ErrorItems.nbytes`).
MEMORY_PER_JSON_BYTE = 12
# How long a final operation is answered without asking Knock: it never changes, but the key that
# read it may be revoked. A fleet's shared copy lives as long (knock_mcp.redis_fleet).
FINAL_OPERATION_LIFETIME = 600.0


class FinalOperationCache:
    """Final operations by address, least recently used first out, bounded by count and by an
    estimate of their memory. An operation larger than the whole budget is not kept.

    Entries also expire after `max_age` seconds. A final operation never changes, but the key that
    read it may be revoked: past that age Knock is asked again, so a revoked key stops being
    answered from the cache (over HTTP with `--auth knock-key`, keys are the callers')."""

    def __init__(
        self,
        max_entries: int = 256,
        max_bytes: int = 64 * 1024 * 1024,
        max_age: float = FINAL_OPERATION_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[Address, tuple[BulkOperation, int, float]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def estimated_bytes(self) -> int:
        return self._bytes

    def get(self, address: Address) -> BulkOperation | None:
        found = self._entries.get(address)
        if found is None:
            return None
        operation, size, stored_at = found
        if self._clock() - stored_at > self.max_age:
            del self._entries[address]
            self._bytes -= size
            return None
        self._entries.move_to_end(address)
        return operation

    def put(self, address: Address, operation: BulkOperation, age: float = 0.0) -> None:
        """Keep `operation`, cached elsewhere `age` seconds ago (by another process of the fleet): it
        expires when that first copy does."""
        if address in self._entries:
            return
        size = estimated_memory(operation)
        if size > self.max_bytes:
            logger.info("Operation %s is too large to cache (about %d MB)", operation.id, size // 1_000_000)
            return
        self._entries[address] = (operation, size, self._clock() - age)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, evicted_size, _) = self._entries.popitem(last=False)
            self._bytes -= evicted_size


def estimated_memory(operation: BulkOperation) -> int:
    """Bytes of memory the validated operation holds: its packed failed items, and its other fields
    from the length of their JSON (short, unless Knock added large fields). Serialising the items
    too would cost as much as reading the operation did."""
    fields = len(operation.model_dump_json(exclude={"error_items"})) * MEMORY_PER_JSON_BYTE
    return fields + (0 if operation.error_items is None else operation.error_items.nbytes)
