"""The text of the `retry_failed_items` prompt, which asks a model to plan the resubmission of an
operation's failed items. Pure functions over the operation's summary.

The bulk endpoint comes from `endpoints`; the prompt tells the model whether Knock has been seen to
use the job's name or the endpoint is inferred, and when the name is unknown it asks the model to
find out from the user rather than guess. (HTTP retries of Knock requests are
`knock_client.RetryPolicy`, a different thing.)
"""

from __future__ import annotations

import math

from knock_mcp.endpoints import BULK_REQUESTS_PER_SECOND, endpoint_for
from knock_mcp.models import MAX_ITEMS_PER_PAGE, BulkOperationStatus
from knock_mcp.summary import BulkOperationSummary, render_summary

# Collections named in the prompt; the rest are counted.
PROMPT_COLLECTIONS = 10


def resubmission_prompt(summary: BulkOperationSummary, collections: list[tuple[str | None, int]]) -> str:
    """The user message of `retry_failed_items`: the operation's facts and what to plan.

    `collections` holds (collection, failed items listed) for every collection, largest first.
    """
    lines = [
        f"Plan a retry of the failed items of Knock bulk operation {summary.id}.",
        "",
        "What knock-mcp read from Knock:",
        render_summary(summary),
        "",
        *_failed_items_lines(summary, collections),
        "",
        *_endpoint_lines(summary.name),
        "",
        *_task_lines(summary, collections),
    ]
    return "\n".join(lines)


def _failed_items_lines(
    summary: BulkOperationSummary, collections: list[tuple[str | None, int]]
) -> list[str]:
    listed = summary.failed_items_listed
    if not listed:
        count = (
            "" if summary.failure_count is None else f" (Knock counts {summary.failure_count:,} failed rows)"
        )
        return [f"Knock lists no failed items for this operation{count}."]
    shown = [
        f"- {name or 'no collection (users or tenants)'}: {count:,} ids, "
        f"{_batches(count):,} request{'s' if _batches(count) != 1 else ''} of at most {MAX_ITEMS_PER_PAGE:,}"
        for name, count in collections[:PROMPT_COLLECTIONS]
    ]
    rest = collections[PROMPT_COLLECTIONS:]
    if rest:
        shown.append(f"- and {len(rest):,} more collections with {sum(count for _, count in rest):,} ids")
    return [f"Knock lists {listed:,} failed items:", *shown]


def _endpoint_lines(name: str) -> list[str]:
    endpoint = endpoint_for(name)
    if endpoint is None:
        return [
            f"knock-mcp does not know which Knock bulk endpoint runs `{name}` jobs. Ask the user which "
            "endpoint started this job before planning; do not guess."
        ]
    source = (
        "Knock has been seen to use this name"
        if endpoint.observed
        else "inferred from the name, not confirmed by Knock: check it with the user"
    )
    lines = [
        f"`{name}` jobs are started by {endpoint.method_and_path} ({source}). Its body: {endpoint.body}."
    ]
    if not endpoint.takes_ids:
        lines.append(
            "That endpoint does not take the failed ids, so they cannot simply be resubmitted: explain this "
            "to the user and ask how they want to proceed."
        )
    return lines


def _task_lines(summary: BulkOperationSummary, collections: list[tuple[str | None, int]]) -> list[str]:
    status = summary.status
    if status in (BulkOperationStatus.QUEUED, BulkOperationStatus.PROCESSING):
        return [
            f"The job is still {status.value}, so more items may fail. Do not retry yet: call "
            f"wait_for_bulk_operation with id={summary.id} until it is completed or failed, then plan "
            "the retry from its final failed items."
        ]
    if not summary.failed_items_listed:
        if status is BulkOperationStatus.FAILED:
            return [
                "The job itself failed and Knock lists no failed items: there are no ids to resubmit. "
                "Tell the user, and suggest checking the request that started the job, then starting "
                "it again."
            ]
        return ["There is nothing to retry: tell the user so."]
    batches = sum(_batches(count) for _, count in collections)
    timing = "" if batches == 1 else f": the {batches:,} requests take at least {_sending_time(batches)}"
    lines = []
    if status is BulkOperationStatus.FAILED:
        lines.append(
            f"The job itself failed after {summary.processed_rows:,} of about "
            f"{summary.estimated_total_rows:,} rows. The rows it never reached are not among the failed "
            "items: resubmitting those ids alone will not finish the job. Say so in the plan."
        )
    lines += [
        "Write a plan for the user, and send nothing to Knock until they approve it:",
        "1. The cause: failed items fail again unless their data or the job's input is fixed first.",
        "2. The ids: get them with list_failed_items, passing next_cursor back until it is null; each "
        "page holds at most 1,000 ids, one request's worth. Object endpoints take one collection per "
        "request: page one collection at a time (its collection argument).",
        f"3. The requests: one per page, at most {MAX_ITEMS_PER_PAGE:,} entities each, to the endpoint "
        f"above. Bulk endpoints allow {BULK_REQUESTS_PER_SECOND} request per second{timing}. On 429 Too "
        "Many Requests wait as long as Retry-After says.",
        "4. The follow-up: each request returns a new bulk operation id; follow each with "
        "wait_for_bulk_operation and report its failures.",
    ]
    return lines


def _batches(count: int) -> int:
    return math.ceil(count / MAX_ITEMS_PER_PAGE)


def _sending_time(requests: int) -> str:
    seconds = max(0, requests - 1) / BULK_REQUESTS_PER_SECOND
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} min"
