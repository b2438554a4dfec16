"""The operation ids each key has read, so a client can be offered them when someone types an id:
Knock has no endpoint that lists them."""

from __future__ import annotations

from collections import OrderedDict

from knock_mcp.fleet import Address


class RecentIds:
    """The operation ids each key fingerprint has read, most recent first, bounded per key and in
    the number of keys (least recently active key first out). Ids are not secrets; fingerprints
    keep the keys out."""

    def __init__(self, per_key: int = 100, keys: int = 1024) -> None:
        self.per_key = per_key
        self.keys = keys
        self._ids: OrderedDict[bytes, OrderedDict[str, None]] = OrderedDict()

    def note(self, address: Address) -> None:
        fingerprint, operation_id = address
        ids = self._ids.get(fingerprint)
        if ids is None:
            ids = self._ids[fingerprint] = OrderedDict()
            if len(self._ids) > self.keys:
                self._ids.popitem(last=False)
        self._ids.move_to_end(fingerprint)
        ids[operation_id] = None
        ids.move_to_end(operation_id)
        if len(ids) > self.per_key:
            ids.popitem(last=False)

    def for_fingerprint(self, fingerprint: bytes) -> list[str]:
        return list(reversed(self._ids.get(fingerprint, {})))
