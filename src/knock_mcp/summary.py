"""A short, exact, human summary of a bulk operation: pure functions over the model and a clock.

`summarize` computes the facts (structured content); `render_summary` writes them as text. Every
piece of text that grows with the operation (names, ids, collections) is cut to a fixed length, so
the text stays under `MAX_SUMMARY_CHARS` however large the operation is, while every count is
stated exactly.
"""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import BaseModel, Field

from knock_mcp.endpoints import job_label
from knock_mcp.models import MAX_ITEMS_PER_PAGE, BulkOperation, BulkOperationStatus, ErrorItems
from knock_mcp.output_schema import SelfContainedSchemaModel

MAX_SUMMARY_CHARS = 1500
PREVIEW_COLLECTIONS = 3
PREVIEW_IDS_PER_COLLECTION = 3
_MAX_NAME_CHARS = 60
_MAX_ID_CHARS = 36
_MAX_COLLECTION_CHARS = 32

_STATUS_PHRASES = {
    BulkOperationStatus.QUEUED: "is queued",
    BulkOperationStatus.PROCESSING: "is processing",
    BulkOperationStatus.COMPLETED: "has completed",
    BulkOperationStatus.FAILED: "has failed",
}
# error_items carry no collection for users and tenants; say which, where the job's name tells.
_ENTITIES_WITHOUT_COLLECTION = {"users": "users", "tenants": "tenants"}


class FailedItemGroup(BaseModel):
    """Failed items of one collection."""

    collection: str | None = Field(description="Object collection; null for users and tenants.")
    count: int = Field(description="How many failed items Knock listed in this collection.")
    sample_ids: list[str] = Field(description="The first few ids, as a preview.")


class BulkOperationSummary(SelfContainedSchemaModel):
    """The facts a person asks for about a bulk operation, computed at `as_of`."""

    id: str
    name: str = Field(description="Knock's name for the job, e.g. users.identify.")
    job: str = Field(description="What the job is, in words.")
    status: BulkOperationStatus
    is_final: bool = Field(description="True once completed or failed: the operation will not change again.")
    percent_complete: float | None = Field(
        description=(
            "0-100, rounded down to 0.1; 100 only once completed; null when rows were processed but "
            "Knock's estimate is 0 or less."
        )
    )
    processed_rows: int
    estimated_total_rows: int
    success_count: int
    failure_count: int | None = Field(
        description="error_count, or the length of error_items when Knock omits it; null if neither is given."
    )
    failed_items_listed: int | None = Field(
        description="How many failed items Knock listed; null if no list."
    )
    failed_item_groups: list[FailedItemGroup] = Field(
        description=f"Listed failed items by collection, largest first, at most {PREVIEW_COLLECTIONS}."
    )
    failed_item_groups_omitted: int = Field(description="Collections left out of failed_item_groups.")
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None = Field(description="completed_at or failed_at.")
    queue_wait_seconds: float | None = Field(description="From queued to started (or to now, while queued).")
    run_seconds: float | None = Field(description="From started to finished (or to now, while processing).")
    rows_per_second: float | None
    seconds_left: float | None = Field(description="Estimated time left while processing, if it can be told.")
    next_step: str = Field(description="What the reader should do next.")
    as_of: datetime = Field(description="When this summary was computed.")


def summarize(operation: BulkOperation, now: datetime) -> BulkOperationSummary:
    """Compute the summary's facts. Never divides by zero; tolerates timestamps out of order."""
    status = operation.status
    processed = operation.processed_rows
    failure_count = operation.error_count
    if failure_count is None and operation.error_items is not None:
        failure_count = len(operation.error_items)
    finished_at = operation.completed_at or operation.failed_at
    queue_end = operation.started_at or (now if status is BulkOperationStatus.QUEUED else None)
    run_end = finished_at or (now if status is BulkOperationStatus.PROCESSING else None)
    run_seconds = _span(operation.started_at, run_end)
    rate = processed / run_seconds if run_seconds and processed > 0 else None
    groups, groups_omitted = _group_failed_items(operation)
    summary = BulkOperationSummary(
        id=str(operation.id),
        name=operation.name,
        job=job_label(operation.name),
        status=status,
        is_final=status.is_final,
        percent_complete=_percent(operation),
        processed_rows=processed,
        estimated_total_rows=operation.estimated_total_rows,
        success_count=operation.success_count,
        failure_count=failure_count,
        failed_items_listed=None if operation.error_items is None else len(operation.error_items),
        failed_item_groups=groups,
        failed_item_groups_omitted=groups_omitted,
        queued_at=operation.inserted_at,
        started_at=operation.started_at,
        finished_at=finished_at,
        queue_wait_seconds=_span(operation.inserted_at, queue_end),
        run_seconds=run_seconds,
        rows_per_second=rate,
        seconds_left=_seconds_left(operation, rate),
        next_step="",
        as_of=now,
    )
    summary.next_step = _next_step(summary)
    return summary


class WaitResult(BulkOperationSummary):
    """The summary's facts at the end of a wait, and whether the wait ran out first."""

    timed_out: bool = Field(
        description="True when the wait ended before the operation was final: it is still queued or running."
    )
    waited_seconds: float = Field(description="How long this call waited, in seconds.")


def wait_result(summary: BulkOperationSummary, timed_out: bool, waited_seconds: float) -> WaitResult:
    """The summary after a wait; when the wait ran out, the next step says how to keep waiting."""
    result = WaitResult(**dict(summary), timed_out=timed_out, waited_seconds=round(waited_seconds, 1))
    if timed_out:
        result.next_step = (
            f"The job is still {summary.status.value} after {_duration(waited_seconds)} of waiting; "
            "call wait_for_bulk_operation again with the same id to keep following it (waiting never "
            "affects the job)."
        )
    return result


def progress_update(summary: BulkOperationSummary) -> tuple[int, int | None, str]:
    """An MCP progress notification's (progress, total, message): rows processed, the larger of the
    estimate and the rows processed (None while Knock has no estimate and the job runs), and a line
    such as "4,200 of 10,000 rows, 3 failed, about 40 s left"."""
    processed = max(0, summary.processed_rows)
    known = summary.estimated_total_rows > 0 or summary.is_final
    total = max(summary.estimated_total_rows, processed) if known else None
    parts = [f"{processed:,} of {total:,} rows" if total is not None else f"{processed:,} rows"]
    if summary.failure_count:
        parts.append(f"{summary.failure_count:,} failed")
    if summary.seconds_left is not None:
        parts.append(f"about {_duration(summary.seconds_left)} left")
    text = ", ".join(parts)
    if summary.status is not BulkOperationStatus.PROCESSING:
        text = f"{summary.status.value}: {text}"
    return processed, total, text


def render_summary(summary: BulkOperationSummary) -> str:
    """The summary as a few plain sentences, under `MAX_SUMMARY_CHARS` characters."""
    lines = [_headline(summary), _counts_line(summary), _timeline_line(summary)]
    if summary.failed_item_groups:
        lines.append(_failed_items_line(summary))
    lines.append(f"Next: {summary.next_step}")
    return "\n".join(line for line in lines if line)


def _percent(operation: BulkOperation) -> float | None:
    # Only a completed operation is 100 % done, whatever the estimate says.
    if operation.status is BulkOperationStatus.COMPLETED:
        return 100.0
    if operation.estimated_total_rows <= 0:
        return 0.0 if operation.processed_rows <= 0 else None
    ratio = max(0, operation.processed_rows) / operation.estimated_total_rows
    return min(math.floor(ratio * 1000) / 10, 99.9)


def _span(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds()


def _seconds_left(operation: BulkOperation, rate: float | None) -> float | None:
    remaining_rows = operation.estimated_total_rows - operation.processed_rows
    if operation.status is not BulkOperationStatus.PROCESSING or not rate or remaining_rows <= 0:
        return None
    return remaining_rows / rate


def _group_failed_items(operation: BulkOperation) -> tuple[list[FailedItemGroup], int]:
    items = operation.error_items if operation.error_items is not None else ErrorItems()
    counts = items.collection_counts()
    largest = counts.most_common(PREVIEW_COLLECTIONS)
    samples: dict[str | None, list[str]] = {collection: [] for collection, _ in largest}
    wanted = sum(min(count, PREVIEW_IDS_PER_COLLECTION) for _, count in largest)
    for position in range(len(items)):
        if wanted == 0:
            break  # every sample is taken: the rest of a long list need not be read
        bucket = samples.get(items.collection(position))
        if bucket is not None and len(bucket) < PREVIEW_IDS_PER_COLLECTION:
            bucket.append(items.id(position))
            wanted -= 1
    groups = [
        FailedItemGroup(collection=collection, count=count, sample_ids=samples[collection])
        for collection, count in largest
    ]
    return groups, len(counts) - len(groups)


def _next_step(summary: BulkOperationSummary) -> str:
    match summary.status:
        case BulkOperationStatus.QUEUED:
            return "Knock has not started the job yet; ask again in a few seconds."
        case BulkOperationStatus.PROCESSING:
            return "The job is still running; ask again later to follow it."
        case BulkOperationStatus.COMPLETED:
            return _after_completion(summary)
        case _:
            return (
                "The job itself failed and Knock's answer does not say why. Check the request that "
                "started it (its size and format), then start it again; rows already processed may be "
                "processed twice."
            )


def _after_completion(summary: BulkOperationSummary) -> str:
    failures = summary.failure_count
    if failures is None:
        unsucceeded = summary.processed_rows - summary.success_count
        if unsucceeded > 0:
            return (
                f"Knock did not say which rows failed, but {unsucceeded:,} processed "
                f"row{_plural(unsucceeded)} did not succeed: check the data the job was started with."
            )
        failures = 0
    if failures <= 0:
        return "Nothing to do: every processed row succeeded."
    return (
        f"Fix the {failures:,} failed item{_plural(failures)} and resubmit "
        f"{'it' if failures == 1 else 'them'} to the bulk endpoint that started this job; list_failed_items "
        f"gives their ids by collection, {MAX_ITEMS_PER_PAGE:,} per page, ready to resubmit (the prompt "
        "retry_failed_items plans the retry)."
    )


def _headline(summary: BulkOperationSummary) -> str:
    job = _clip(summary.job, _MAX_NAME_CHARS)
    named = job if summary.job == summary.name else f"{job} (`{_clip(summary.name, _MAX_NAME_CHARS)}`)"
    if summary.percent_complete is None:
        progress = f"progress unknown ({_no_estimate(summary)})"
    elif summary.status is BulkOperationStatus.FAILED:
        progress = f"it got {_format_percent(summary.percent_complete)} of the way through"
    else:
        progress = f"{_format_percent(summary.percent_complete)} done"
    return f"{named} {_STATUS_PHRASES[summary.status]}: {progress}. Operation {summary.id}."


def _counts_line(summary: BulkOperationSummary) -> str:
    failed = "failures not reported" if summary.failure_count is None else f"{summary.failure_count:,} failed"
    estimate = (
        f"of about {summary.estimated_total_rows:,} estimated"
        if summary.estimated_total_rows > 0
        else f"({_no_estimate(summary)})"
    )
    succeeded = f"{summary.success_count:,} succeeded"
    text = f"Rows: {summary.processed_rows:,} processed {estimate}; {succeeded}, {failed}."
    if summary.success_count > summary.processed_rows:
        # Passed on as Knock gives them, but not silently: the reader should not trust either count alone.
        text += (
            f" Knock's counts disagree: {summary.success_count:,} successes for {summary.processed_rows:,} "
            f"processed row{_plural(summary.processed_rows)}."
        )
    listed = summary.failed_items_listed
    if listed is not None and listed != summary.failure_count:
        text += f" Knock lists {listed:,} failed item{_plural(listed)}."
    return text


def _timeline_line(summary: BulkOperationSummary) -> str:
    parts = [f"Queued {_when(summary.queued_at, summary.as_of)}"]
    if summary.started_at is not None:
        parts.append(f"started {_when(summary.started_at, summary.as_of)}")
    elif summary.queue_wait_seconds is not None:
        parts.append(f"waiting for {_duration(summary.queue_wait_seconds)}")
    if summary.finished_at is not None:
        verb = "failed" if summary.status is BulkOperationStatus.FAILED else "finished"
        parts.append(f"{verb} {_when(summary.finished_at, summary.as_of)}")
    if summary.run_seconds is not None:
        ran = "running for" if summary.status is BulkOperationStatus.PROCESSING else "ran for"
        speed = f" at {_format_rate(summary.rows_per_second)}" if summary.rows_per_second else ""
        parts.append(f"{ran} {_duration(summary.run_seconds)}{speed}")
    if summary.seconds_left is not None:
        parts.append(f"about {_duration(summary.seconds_left)} left")
    return "; ".join(parts) + "."


def _failed_items_line(summary: BulkOperationSummary) -> str:
    groups = []
    for group in summary.failed_item_groups:
        label = (
            _clip(group.collection, _MAX_COLLECTION_CHARS)
            if group.collection is not None
            else _ENTITIES_WITHOUT_COLLECTION.get(summary.name.split(".")[0], "no collection")
        )
        ids = ", ".join(_clip(item_id, _MAX_ID_CHARS) for item_id in group.sample_ids)
        more = ", ..." if group.count > len(group.sample_ids) else ""
        groups.append(f"{label} {group.count:,} ({ids}{more})")
    omitted = summary.failed_item_groups_omitted
    tail = f"; and {omitted:,} more collection{_plural(omitted)}" if omitted else ""
    return f"Failed items by collection: {'; '.join(groups)}{tail}."


def _when(moment: datetime, now: datetime) -> str:
    stamp = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = (now - moment).total_seconds()
    if delta < 0:
        return stamp
    return f"{stamp} ({_duration(delta)} ago)"


def _duration(seconds: float) -> str:
    total = int(seconds)
    if total < 60:
        return f"{total} s"
    units = [("d", 86400), ("h", 3600), ("min", 60), ("s", 1)]
    parts = []
    for unit, size in units:
        amount, total = divmod(total, size)
        if amount:
            parts.append(f"{amount:,} {unit}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def _format_percent(percent: float) -> str:
    return f"{percent:.0f} %" if percent == int(percent) else f"{percent:.1f} %"


def _no_estimate(summary: BulkOperationSummary) -> str:
    return (
        "Knock gave no estimate of the total"
        if summary.is_final
        else "Knock has no estimate of the total yet"
    )


def _format_rate(rows_per_second: float) -> str:
    """A speed a person reads at a glance: per second down to 1 row/s, then per minute, then per hour."""
    for rate, unit in (
        (rows_per_second, "/s"),
        (rows_per_second * 60, " a minute"),
        (rows_per_second * 3600, " an hour"),
    ):
        if rate >= 10:
            return f"{rate:,.0f} rows{unit}"
        if rate >= 1:
            shown = f"{math.floor(rate * 10) / 10:g}"
            return f"{shown} row{'' if shown == '1' else 's'}{unit}"
    return "less than 1 row an hour"


def _clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters: control characters become spaces."""
    flat = "".join(" " if not character.isprintable() else character for character in text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _plural(count: int) -> str:
    return "" if count == 1 else "s"
