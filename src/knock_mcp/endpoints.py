"""Knock's bulk jobs by name: what each is called in words, and which bulk endpoint takes its
failed items again. One table, read by the summary (the job's label) and by the resubmission
prompt and `list_failed_items` (the endpoint). HTTP retries of Knock requests are
`knock_client.RetryPolicy`, a different thing.

Knock does not document the `name` of its bulk operations. The names Knock has been seen to use
are marked `observed`; the others follow the same `<resource>.<action>` pattern from the path of
each documented bulk endpoint and are inferred. A name not in the table still gets a plain label
from its two parts, and no endpoint: nothing is guessed about where to resubmit.

Schedules have one bulk endpoint (create): Knock's schedule update and delete take many ids but
answer with the schedules at once, not with a bulk operation.
"""

from __future__ import annotations

from dataclasses import dataclass

# Knock limits its bulk endpoints to one request per second.
BULK_REQUESTS_PER_SECOND = 1
_FULL_RECORDS = "the full records of the failed ids, from the data the job was started with"
# The channel endpoint selects messages by filters, so failed ids cannot go back into it.
_MESSAGE_FILTERS = "filters (recipient_ids, tenants, workflows, a time range, ...), not message ids"


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


@dataclass(frozen=True)
class BulkJob:
    """One kind of bulk job: its label in words and the endpoint that starts it."""

    label: str
    endpoint: BulkEndpoint


def _job(label: str, method_and_path: str, body: str, *, observed: bool = False) -> BulkJob:
    return BulkJob(label, BulkEndpoint(method_and_path, body, takes_ids=True, observed=observed))


def _message_job(action: str, label: str, *, observed: bool = False) -> tuple[str, BulkJob]:
    endpoint = BulkEndpoint(
        f"POST /v1/channels/{{channel_id}}/messages/bulk/{action}", _MESSAGE_FILTERS, False, observed
    )
    return f"messages.{action}", BulkJob(label, endpoint)


_OBJECTS = "POST /v1/objects/{collection}/bulk"
_SUBSCRIPTIONS = '{"subscriptions": [...]} with the failed object ids and their recipients, as first sent'

BULK_JOBS: dict[str, BulkJob] = {
    "users.identify": _job(
        "Bulk identify users",
        "POST /v1/users/bulk/identify",
        f'{{"users": [...]}} with {_FULL_RECORDS}',
        observed=True,
    ),
    "users.delete": _job(
        "Bulk delete users", "POST /v1/users/bulk/delete", '{"user_ids": [...]}', observed=True
    ),
    "users.set_preferences": _job(
        "Bulk set user preferences",
        "POST /v1/users/bulk/preferences",
        '{"user_ids": [...], "preferences": {...}} with the same preferences as the original request',
        observed=True,
    ),
    "objects.set": _job("Bulk set objects", f"{_OBJECTS}/set", f'{{"objects": [...]}} with {_FULL_RECORDS}'),
    "objects.delete": _job("Bulk delete objects", f"{_OBJECTS}/delete", '{"object_ids": [...]}'),
    "objects.add_subscriptions": _job(
        "Bulk add object subscriptions", f"{_OBJECTS}/subscriptions/add", _SUBSCRIPTIONS
    ),
    "objects.delete_subscriptions": _job(
        "Bulk delete object subscriptions", f"{_OBJECTS}/subscriptions/delete", _SUBSCRIPTIONS
    ),
    "tenants.set": _job(
        "Bulk set tenants", "POST /v1/tenants/bulk/set", f'{{"tenants": [...]}} with {_FULL_RECORDS}'
    ),
    "tenants.delete": _job("Bulk delete tenants", "POST /v1/tenants/bulk/delete", '{"tenant_ids": [...]}'),
    "schedules.create": _job(
        "Bulk create schedules",
        "POST /v1/schedules/bulk/create",
        f'{{"schedules": [...]}} with {_FULL_RECORDS}',
    ),
    # The actions Knock's channel endpoint documents.
    **dict(
        [
            _message_job("seen", "Bulk mark messages as seen"),
            _message_job("unseen", "Bulk mark messages as unseen"),
            _message_job("read", "Bulk mark messages as read"),
            _message_job("unread", "Bulk mark messages as unread", observed=True),
            _message_job("archived", "Bulk archive messages"),
            _message_job("unarchived", "Bulk unarchive messages"),
            _message_job("interacted", "Bulk mark messages as interacted with"),
            _message_job("archive", "Bulk archive messages"),
            _message_job("unarchive", "Bulk unarchive messages"),
            _message_job("delete", "Bulk delete messages"),
        ]
    ),
}


def job_label(name: str) -> str:
    """The job in words: the table's label; for another `<resource>.<action>` name such as
    `workflows.mystery`, "Bulk job on workflows: mystery"; anything else as Knock spells it.
    The summary shows Knock's own name beside any label, so nothing is lost."""
    known = BULK_JOBS.get(name)
    if known is not None:
        return known.label
    resource, separator, action = name.partition(".")
    if not separator or not resource or not action or "." in action:
        return name
    return f"Bulk job on {resource.replace('_', ' ')}: {action.replace('_', ' ')}"


def endpoint_for(name: str) -> BulkEndpoint | None:
    """The bulk endpoint that runs jobs called `name`, if knock-mcp knows it."""
    known = BULK_JOBS.get(name)
    return None if known is None else known.endpoint
