"""Summaries as pure functions of an operation and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from knock_mcp.endpoints import BULK_JOBS
from knock_mcp.models import MAX_TEXT_CHARS, BulkOperation, BulkOperationStatus
from knock_mcp.summary import MAX_SUMMARY_CHARS, progress_update, render_summary, summarize, wait_result
from tests.support.payloads import load_fixture

NOW = datetime(2026, 11, 28, 10, 1, 0, tzinfo=UTC)


def operation(fixture: str = "processing", **changes: Any) -> BulkOperation:
    return BulkOperation.model_validate(load_fixture(fixture) | changes)


def text_of(op: BulkOperation, now: datetime = NOW) -> str:
    return render_summary(summarize(op, now))


@pytest.mark.parametrize(
    ("status", "processed", "estimate", "percent"),
    [
        ("queued", 0, 1000, 0.0),
        ("processing", 400, 1000, 40.0),
        ("processing", 1, 3, 33.3),
        ("processing", 2, 3, 66.6),
        ("processing", 1000, 1000, 99.9),
        ("processing", 5000, 1000, 99.9),
        ("processing", 10, 0, None),
        ("queued", 0, 0, 0.0),
        ("processing", -5, 100, 0.0),
        ("completed", 10, 1000, 100.0),
        ("completed", 0, 0, 100.0),
        ("failed", 250, 1000, 25.0),
        ("failed", 2000, 1000, 99.9),
    ],
)
def test_percent_never_divides_by_zero_nor_passes_100(
    status: str, processed: int, estimate: int, percent: float | None
) -> None:
    op = operation(status=status, processed_rows=processed, estimated_total_rows=estimate)
    assert summarize(op, NOW).percent_complete == percent


def test_processing_summary_states_progress_speed_and_time_left() -> None:
    summary = summarize(operation("processing"), NOW)
    assert summary.run_seconds == 50
    assert summary.rows_per_second == 8
    assert summary.seconds_left == 75
    assert summary.queue_wait_seconds == 10
    text = render_summary(summary)
    assert text.splitlines() == [
        "Bulk identify users (`users.identify`) is processing: 40 % done. "
        "Operation 22222222-2222-4222-8222-222222222222.",
        "Rows: 400 processed of about 1,000 estimated; 398 succeeded, 2 failed.",
        "Queued 2026-11-28 10:00:00 UTC (1 min ago); started 2026-11-28 10:00:10 UTC (50 s ago); "
        "running for 50 s at 8 rows/s; about 1 min 15 s left.",
        "Failed items by collection: users 2 (user_1, user_2).",
        "Next: The job is still running; ask again later to follow it.",
    ]


def test_completed_summary_groups_failures_by_collection_and_says_what_to_do() -> None:
    text = text_of(operation("completed"), NOW + timedelta(hours=1))
    assert "Bulk delete users (`users.delete`) has completed: 100 % done." in text
    assert "997 succeeded, 3 failed." in text
    assert "finished 2026-11-28 10:01:50 UTC (59 min 10 s ago); ran for 1 min 40 s at 10 rows/s." in text
    assert "Failed items by collection: projects 2 (proj_1, proj_2); users 1 (user_7)." in text
    assert "Next: Fix the 3 failed items and resubmit them" in text


def test_a_clean_completion_needs_nothing() -> None:
    op = operation("completed", error_count=0, error_items=[], success_count=1000)
    text = text_of(op)
    assert "Failed items" not in text
    assert "Next: Nothing to do" in text


def test_failed_summary_says_when_and_what_next() -> None:
    summary = summarize(operation("failed"), NOW)
    assert summary.finished_at == datetime(2026, 11, 28, 10, 0, 35, tzinfo=UTC)
    text = render_summary(summary)
    assert (
        "Bulk set user preferences (`users.set_preferences`) has failed: it got 25 % of the way through."
        in text
    )
    assert "failed 2026-11-28 10:00:35 UTC (25 s ago); ran for 25 s at 10 rows/s." in text
    assert "Next: The job itself failed and Knock's answer does not say why." in text


def test_queued_summary_says_how_long_it_has_waited() -> None:
    summary = summarize(operation("queued"), NOW)
    assert summary.queue_wait_seconds == 60
    assert summary.run_seconds is None
    assert "waiting for 1 min." in render_summary(summary)
    assert "Next: Knock has not started the job yet" in render_summary(summary)


@pytest.mark.parametrize(
    ("name", "headline"),
    [
        ("users.identify", "Bulk identify users (`users.identify`) is processing"),
        ("objects.set", "Bulk set objects (`objects.set`) is processing"),
        ("objects.add_subscriptions", "Bulk add object subscriptions (`objects.add_subscriptions`)"),
        ("tenants.delete", "Bulk delete tenants (`tenants.delete`)"),
        ("schedules.create", "Bulk create schedules (`schedules.create`)"),
        ("messages.archived", "Bulk archive messages (`messages.archived`)"),
        (
            "workflows.mystery_run",
            "Bulk job on workflows: mystery run (`workflows.mystery_run`) is processing",
        ),
        ("mystery", "mystery is processing"),
    ],
)
def test_every_job_gets_a_label_and_keeps_knocks_name(name: str, headline: str) -> None:
    assert text_of(operation(name=name)).startswith(headline)


def test_every_documented_bulk_endpoint_has_a_job_name() -> None:
    # The bulk endpoints Knock documents (the channel one once per action it lists).
    documented = {
        "POST /v1/users/bulk/identify",
        "POST /v1/users/bulk/delete",
        "POST /v1/users/bulk/preferences",
        "POST /v1/objects/{collection}/bulk/set",
        "POST /v1/objects/{collection}/bulk/delete",
        "POST /v1/objects/{collection}/bulk/subscriptions/add",
        "POST /v1/objects/{collection}/bulk/subscriptions/delete",
        "POST /v1/tenants/bulk/set",
        "POST /v1/tenants/bulk/delete",
        "POST /v1/schedules/bulk/create",
        *(
            f"POST /v1/channels/{{channel_id}}/messages/bulk/{action}"
            for action in (
                "seen", "unseen", "read", "unread", "archived", "unarchived", "interacted", "archive",
                "unarchive", "delete",
            )
        ),
    }  # fmt: skip
    assert {job.endpoint.method_and_path for job in BULK_JOBS.values()} == documented


@pytest.mark.parametrize(
    ("processed", "seconds", "speed"),
    [
        (400, 50, "at 8 rows/s"),
        (1, 1, "at 1 row/s"),
        (25, 10, "at 2.5 rows/s"),
        (40, 61, "at 39 rows a minute"),
        (1, 60, "at 1 row a minute"),
        (2, 3600, "at 2 rows an hour"),
        (1, 7 * 3600, "at less than 1 row an hour"),
    ],
)
def test_speeds_read_in_plain_units(processed: int, seconds: int, speed: str) -> None:
    op = operation(
        "completed", processed_rows=processed, success_count=processed, error_count=0, error_items=[]
    )
    assert op.started_at is not None
    op = op.model_copy(update={"completed_at": op.started_at + timedelta(seconds=seconds)})
    text = text_of(op)
    assert f"ran for {_duration_text(seconds)} {speed}." in text
    assert "e-0" not in text


def _duration_text(seconds: int) -> str:
    return {1: "1 s", 10: "10 s", 50: "50 s", 60: "1 min", 61: "1 min 1 s", 3600: "1 h", 25200: "7 h"}[
        seconds
    ]


def test_one_failed_item_reads_in_the_singular() -> None:
    op = operation("completed", processed_rows=1, success_count=0, error_count=1, error_items=None)
    assert "Next: Fix the 1 failed item and resubmit it to the bulk endpoint" in text_of(op)


def test_successes_beyond_the_processed_rows_are_called_a_disagreement() -> None:
    op = operation("completed", processed_rows=10, success_count=12, error_count=0, error_items=[])
    assert "12 succeeded, 0 failed. Knock's counts disagree: 12 successes for 10 processed rows." in text_of(
        op
    )


def test_error_count_falls_back_to_the_listed_items() -> None:
    assert summarize(operation("processing", error_count=None), NOW).failure_count == 2


def test_a_disagreement_between_count_and_list_is_stated() -> None:
    text = text_of(operation("processing", error_count=5))
    assert "5 failed. Knock lists 2 failed items." in text


def test_timestamps_out_of_order_give_no_negative_durations() -> None:
    op = operation("completed", started_at="2026-11-28T10:05:00Z", completed_at="2026-11-28T10:01:00Z")
    summary = summarize(op, NOW)
    assert summary.run_seconds is None
    assert summary.rows_per_second is None
    assert "ago" in render_summary(summary)


def test_a_clock_behind_knock_gives_no_negative_ages() -> None:
    text = text_of(operation("processing"), NOW - timedelta(hours=1))
    assert "-" not in text.split("Operation")[0]
    assert " ago" not in text


def test_processing_past_the_estimate_has_no_time_left() -> None:
    summary = summarize(operation("processing", processed_rows=1500, success_count=1498), NOW)
    assert summary.seconds_left is None
    assert summary.percent_complete == 99.9


def test_many_collections_are_previewed_with_a_count_of_the_rest() -> None:
    items = [{"id": f"id_{n}", "collection": f"c{n % 7}"} for n in range(70)]
    summary = summarize(operation("completed", error_items=items, error_count=70), NOW)
    assert len(summary.failed_item_groups) == 3
    assert summary.failed_item_groups_omitted == 4
    assert all(len(group.sample_ids) == 3 for group in summary.failed_item_groups)
    assert "and 4 more collections." in render_summary(summary)


def test_the_worst_case_stays_under_the_bound_and_keeps_every_count() -> None:
    huge = 10**18 + 7
    long_text = "名" * (MAX_TEXT_CHARS - 4) + "\n\x00"
    collections = [long_text + str(n) for n in range(50)]
    # Long ids where the preview shows them; short ones after, to keep the test's memory small.
    items = [
        {"id": long_text if n < 500 else f"id_{n}", "collection": collections[n % 50]} for n in range(100_000)
    ]
    op = operation(
        "processing",
        name=long_text,
        processed_rows=huge,
        success_count=huge,
        error_count=huge,
        estimated_total_rows=huge * 3,
        error_items=items,
        inserted_at="0001-01-01T00:00:00Z",
        started_at="0001-01-01T00:00:01Z",
    )
    text = text_of(op, datetime(9999, 12, 31, tzinfo=UTC))
    assert len(text) <= MAX_SUMMARY_CHARS
    for count in (huge, huge * 3):
        assert f"{count:,}" in text
    assert "\x00" not in text


@pytest.mark.parametrize("status", list(BulkOperationStatus))
def test_every_status_has_a_next_step(status: BulkOperationStatus) -> None:
    assert summarize(operation(status=status.value), NOW).next_step


def test_a_completion_without_a_failure_count_does_not_claim_success() -> None:
    op = operation("completed", error_count=None, error_items=None, processed_rows=1000, success_count=900)
    summary = summarize(op, NOW)
    assert summary.failure_count is None
    text = render_summary(summary)
    assert "900 succeeded, failures not reported." in text
    assert "Next: Knock did not say which rows failed, but 100 processed rows did not succeed" in text


def test_a_completion_without_a_failure_count_but_all_succeeded_needs_nothing() -> None:
    op = operation("completed", error_count=None, error_items=None, processed_rows=1000, success_count=1000)
    assert "Next: Nothing to do" in text_of(op)


def test_rows_without_an_estimate_give_unknown_progress() -> None:
    text = text_of(operation("processing", estimated_total_rows=0))
    assert "is processing: progress unknown (Knock has no estimate of the total yet)." in text
    assert "Rows: 400 processed (Knock has no estimate of the total yet); 398 succeeded" in text
    assert "about 0" not in text


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"status": "queued", "processed_rows": 0, "error_count": 0}, (0, 1000, "queued: 0 of 1,000 rows")),
        ({}, (400, 1000, "400 of 1,000 rows, 2 failed, about 1 min 15 s left")),
        ({"estimated_total_rows": 0}, (400, None, "400 rows, 2 failed")),
        ({"processed_rows": 1500}, (1500, 1500, "1,500 of 1,500 rows, 2 failed")),
        ({"processed_rows": -3, "error_count": 0}, (0, 1000, "0 of 1,000 rows")),
        (
            {"status": "completed", "processed_rows": 990, "estimated_total_rows": 0},
            (990, 990, "completed: 990 of 990 rows, 2 failed"),
        ),
        ({"status": "failed", "error_count": 0}, (400, 1000, "failed: 400 of 1,000 rows")),
    ],
)
def test_progress_updates_count_rows_and_never_invent_a_total(
    changes: dict[str, Any], expected: tuple[int, int | None, str]
) -> None:
    assert progress_update(summarize(operation("processing", **changes), NOW)) == expected


def test_a_wait_that_ran_out_says_how_to_keep_waiting() -> None:
    summary = summarize(operation("processing"), NOW)
    running = wait_result(summary, timed_out=True, waited_seconds=45.04)
    assert (running.timed_out, running.waited_seconds) == (True, 45.0)
    assert running.next_step.startswith("The job is still processing after 45 s of waiting; call ")
    assert running.processed_rows == summary.processed_rows
    done = wait_result(summarize(operation("completed"), NOW), timed_out=False, waited_seconds=3)
    assert done.next_step == summarize(operation("completed"), NOW).next_step
