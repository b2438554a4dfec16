"""The model against Knock's contract: fixture payloads per status, optional, nullable and extra fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from knock_mcp.errors import InvalidOperationId
from knock_mcp.models import BulkOperation, BulkOperationStatus, parse_operation_id
from tests.support.payloads import load_fixture


@pytest.mark.parametrize("name", ["queued", "processing", "completed", "failed", "minimal", "extended"])
def test_fixture_payloads_validate_and_round_trip(name: str) -> None:
    payload = load_fixture(name)
    operation = BulkOperation.model_validate(payload)
    dumped = operation.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped["__typename"] == "BulkOperation"
    assert dumped == payload


def test_unknown_fields_are_kept_on_the_operation_and_its_items() -> None:
    operation = BulkOperation.model_validate(load_fixture("extended"))
    dumped = operation.model_dump(mode="json", by_alias=True)
    assert dumped["environment"] == "production"
    assert dumped["retries"] == {"attempted": 0}
    assert dumped["error_items"][0]["reason"] == "invalid_email"


def test_optional_fields_may_be_missing() -> None:
    operation = BulkOperation.model_validate(load_fixture("minimal"))
    assert operation.error_count is None
    assert operation.error_items is None
    assert operation.progress_path is None
    assert operation.started_at is None


def test_status_and_timestamps_are_typed() -> None:
    operation = BulkOperation.model_validate(load_fixture("completed"))
    assert operation.status is BulkOperationStatus.COMPLETED
    assert operation.status.is_final
    assert not BulkOperationStatus.PROCESSING.is_final
    assert operation.completed_at == datetime(2026, 11, 28, 10, 1, 50, tzinfo=UTC)


def test_timestamps_without_offset_are_read_as_utc() -> None:
    payload = load_fixture("queued") | {"inserted_at": "2026-11-28T10:00:00"}
    assert BulkOperation.model_validate(payload).inserted_at.tzinfo is UTC


def test_relative_progress_path_is_kept_as_a_string() -> None:
    payload = load_fixture("queued")
    assert BulkOperation.model_validate(payload).progress_path == f"/v1/bulk_operations/{payload['id']}"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "paused"}, "status"),
        ({"processed_rows": "many"}, "processed_rows"),
        ({"inserted_at": None}, "inserted_at"),
        ({"id": "not-a-uuid"}, "id"),
        ({"error_items": [{"collection": "projects"}]}, "error_items"),
    ],
)
def test_contract_violations_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        BulkOperation.model_validate(load_fixture("queued") | change)
    assert raised.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(
    "required",
    [
        "__typename",
        "id",
        "name",
        "status",
        "estimated_total_rows",
        "processed_rows",
        "success_count",
        "updated_at",
        "inserted_at",
    ],
)
def test_required_fields_are_required(required: str) -> None:
    payload = load_fixture("queued")
    del payload[required]
    with pytest.raises(ValidationError):
        BulkOperation.model_validate(payload)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000"),
        ("  123E4567-E89B-12D3-A456-426614174000\n", "123e4567-e89b-12d3-a456-426614174000"),
        ("123E4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-426614174000"),
    ],
)
def test_operation_ids_are_canonical_uuids(raw: str, canonical: str) -> None:
    assert parse_operation_id(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "../../v1/users",
        "123e4567-e89b-12d3-a456-426614174000/../../users",
        "123e4567e89b12d3a45642661417400",
        "123e4567-e89b-12d3-a456-42661417400g",
        "é" * 40,
        "1\x00",
    ],
)
def test_anything_but_a_uuid_is_refused(raw: str) -> None:
    with pytest.raises(InvalidOperationId, match="is not a bulk operation id"):
        parse_operation_id(raw)


def test_a_uuid_buried_in_a_pasted_path_is_suggested() -> None:
    with pytest.raises(InvalidOperationId, match="Did you mean 123e4567-e89b-12d3-a456-426614174000"):
        parse_operation_id("https://api.knock.app/v1/bulk_operations/123E4567-e89b-12d3-a456-426614174000")


@pytest.mark.parametrize(
    ("pasted", "suggested"),
    [
        ("123e4567-e89b-12d3-a456-426614174000 and more", "123e4567-e89b-12d3-a456-426614174000"),
        # Middles that lead nowhere before the UUID, one of them overlapping its start.
        ("a-0000-b-1111-" + "123E4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000"),
        ("x-1234-123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000"),
        # Two UUIDs: the first is suggested.
        (
            "00000000-0000-4000-8000-000000000001/00000000-0000-4000-8000-000000000002",
            "00000000-0000-4000-8000-000000000001",
        ),
    ],
)
def test_the_first_buried_uuid_is_suggested_past_any_decoy(pasted: str, suggested: str) -> None:
    with pytest.raises(InvalidOperationId, match=f"Did you mean {suggested}"):
        parse_operation_id(pasted)


def test_no_uuid_behind_many_decoys_is_no_suggestion() -> None:
    with pytest.raises(InvalidOperationId) as raised:
        parse_operation_id("a-0000-" * 1000 + "0" * 1000)
    assert "Did you mean" not in str(raised.value)


def test_long_input_is_shortened_in_the_error() -> None:
    with pytest.raises(InvalidOperationId) as raised:
        parse_operation_id("x" * 10_000)
    assert len(str(raised.value)) < 400
