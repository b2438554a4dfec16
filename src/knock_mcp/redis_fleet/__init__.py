"""A fleet of knock-mcp processes sharing Knock's traffic through Redis (or Valkey, 7 or later).

Per (key fingerprint, operation id) Redis holds: the latest snapshot and when Knock gave it
(`snapshot`), a final operation for 10 minutes from when it was first stored (`final`), a short
single-flight lock (`fetching`), the poll loop's lease, start time and waiters' deadlines (`lease`,
`loop`, `deadlines`); each new snapshot is published on a channel (`news`). Per key fingerprint:
the next turn of the fleet's request budget and Knock's `Retry-After` hold-off. Per fleet: the
processes alive (the fallback budget divides by their number) and the secrets in use, as
fingerprints, to notice a process configured with another one.

Redis never holds a Knock key: keys appear only as HMACs under the fleet secret. Every value that
may be served to a caller (snapshots, final operations, published news) is Knock's JSON,
zlib-compressed, signed with the fleet secret over its address, capped in size and validated on
read; anything else is refused and fetched from Knock instead.

Redis is help, not a dependency: every call has a deadline, the first failure opens a circuit
breaker (one warning), and until a background probe finds Redis again every process works alone
with a share of the budget. No caller waits on or sees a Redis failure.

By concern:
- `sharing`: `RedisFleet`, reads through the fleet, the heartbeat and `/healthz`'s report;
- `connection`: every Redis call bounded, the circuit breaker and its probe;
- `values`: key naming; the signed, compressed, size-capped values;
- `loops`: the poll loop's lease, schedule (start time, waiters' deadlines) and news;
- `budget`: the request budget per key and Knock's `Retry-After`, with the fallback share.

Only `knock_mcp.server.build_fleet` imports this package, and only when `KNOCK_MCP_REDIS_URL` is
set: every module here loads redis-py.
"""

from knock_mcp.redis_fleet.sharing import RedisFleet

__all__ = ["RedisFleet"]
