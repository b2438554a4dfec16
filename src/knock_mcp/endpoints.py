"""Which Knock bulk endpoint takes a job's failed items again, read from the job's `name`.

Knock does not document its names; those it has been seen to use are marked `observed`, the others
follow the same `<resource>.<action>` pattern and are inferred. A name not listed here gets no
guess: callers say so rather than invent an endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

# Knock limits its bulk endpoints to one request per second.
BULK_REQUESTS_PER_SECOND = 1


@dataclass(frozen=True)
class BulkEndpoint:
    """A Knock bulk endpoint and how failed ids go back into it."""

    method_and_path: str
    body: str
    takes_ids: bool
    observed: bool

    def route(self, collection: str | None) -> str:
        """The endpoint with the collection filled in, where the path has one."""
        return self.method_and_path.replace("{collection}", collection or "{collection}")


_FULL_RECORDS = "the full records of the failed ids, from the data the job was started with"

ENDPOINTS: dict[str, BulkEndpoint] = {
    "users.identify": BulkEndpoint(
        "POST /v1/users/bulk/identify", f'{{"users": [...]}} with {_FULL_RECORDS}', True, observed=True
    ),
    "users.delete": BulkEndpoint("POST /v1/users/bulk/delete", '{"user_ids": [...]}', True, observed=True),
    "users.set_preferences": BulkEndpoint(
        "POST /v1/users/bulk/preferences",
        '{"user_ids": [...], "preferences": {...}} with the same preferences as the original request',
        True,
        observed=True,
    ),
    "objects.set": BulkEndpoint(
        "POST /v1/objects/{collection}/bulk/set", f'{{"objects": [...]}} with {_FULL_RECORDS}', True, False
    ),
    "objects.delete": BulkEndpoint(
        "POST /v1/objects/{collection}/bulk/delete", '{"object_ids": [...]}', True, observed=False
    ),
    "tenants.set": BulkEndpoint(
        "POST /v1/tenants/bulk/set", f'{{"tenants": [...]}} with {_FULL_RECORDS}', True, observed=False
    ),
    "tenants.delete": BulkEndpoint("POST /v1/tenants/bulk/delete", '{"tenant_ids": [...]}', True, False),
}


def endpoint_for(name: str) -> BulkEndpoint | None:
    """The bulk endpoint that runs jobs called `name`, if knock-mcp knows it."""
    known = ENDPOINTS.get(name)
    if known is not None:
        return known
    resource, _, action = name.partition(".")
    if resource == "messages" and action:
        # Observed as messages.unread. The channel endpoint selects messages by filters, not ids.
        return BulkEndpoint(
            f"POST /v1/channels/{{channel_id}}/messages/bulk/{action}",
            "filters (recipient_ids, tenants, workflows, a time range, ...), not message ids",
            takes_ids=False,
            observed=action == "unread",
        )
    return None
