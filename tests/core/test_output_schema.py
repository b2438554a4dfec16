"""Self-contained output schemas say what pydantic's say: the same documents pass, the same mistakes fail."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, TypeAdapter

from knock_mcp.models import BulkOperation
from knock_mcp.summary import BulkOperationSummary, summarize
from knock_mcp.views import BoundedOperation, bound_operation
from tests.support.payloads import load_fixture

FIXTURES = ["queued", "processing", "completed", "failed", "minimal", "extended"]


def documents(name: str) -> list[tuple[type[BaseModel], dict[str, Any]]]:
    operation = BulkOperation.model_validate(load_fixture(name))
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    return [
        (BoundedOperation, bound_operation(operation, 1).model_dump(mode="json", by_alias=True)),
        (BulkOperationSummary, summarize(operation, now).model_dump(mode="json")),
    ]


@pytest.mark.parametrize("model", [BoundedOperation, BulkOperationSummary])
def test_schemas_are_self_contained(model: type[BaseModel]) -> None:
    text = json.dumps(TypeAdapter(model).json_schema())
    assert "$ref" not in text
    assert "$defs" not in text


@pytest.mark.parametrize("name", FIXTURES)
def test_every_result_validates(name: str) -> None:
    for model, document in documents(name):
        jsonschema.validate(document, TypeAdapter(model).json_schema())


@pytest.mark.parametrize(
    ("path", "bad_value"),
    [
        (("operation", "error_count"), "three"),
        (("operation", "status"), "paused"),
        (("operation", "error_items"), [{"collection": "projects"}]),
        (("error_items_omitted",), None),
        (("note",), 5),
    ],
)
def test_mistakes_are_still_caught(path: tuple[str, ...], bad_value: object) -> None:
    (_, document), _ = documents("completed")
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad_value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, TypeAdapter(BoundedOperation).json_schema())
