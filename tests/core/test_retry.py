"""The retry_failed_items prompt: its text for every status, and through the server."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.types import INVALID_PARAMS, TextContent

from knock_mcp.endpoints import endpoint_for
from knock_mcp.models import BulkOperation
from knock_mcp.resubmission import resubmission_prompt
from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from knock_mcp.summary import summarize
from tests.support.fake_knock import FakeKnock, Reply
from tests.support.payloads import load_fixture

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def prompt_for(fixture: str, **changes: Any) -> str:
    operation = BulkOperation.model_validate(load_fixture(fixture) | changes)
    collections = Counter(item.collection for item in operation.error_items or []).most_common()
    return resubmission_prompt(summarize(operation, NOW), collections)


@pytest.mark.parametrize(
    ("fixture", "changes", "expected"),
    [
        ("queued", {}, "The job is still queued, so more items may fail. Do not retry yet: call wait_for"),
        ("processing", {}, "The job is still processing, so more items may fail."),
        ("completed", {}, "Write a plan for the user, and send nothing to Knock until they approve it"),
        ("completed", {"error_items": [], "error_count": 0}, "There is nothing to retry"),
        ("failed", {}, "The job itself failed and Knock lists no failed items: there are no ids"),
        (
            "failed",
            {"error_items": [{"id": "u1"}], "error_count": 1},
            "The job itself failed after 250 of about 1,000 rows. The rows it never reached",
        ),
    ],
)
def test_the_prompt_renders_for_each_status(fixture: str, changes: dict[str, Any], expected: str) -> None:
    text = prompt_for(fixture, **changes)
    assert expected in text
    assert text.startswith(
        f"Plan a retry of the failed items of Knock bulk operation {load_fixture(fixture)['id']}"
    )
    assert "What knock-mcp read from Knock:" in text
    assert len(text) < 6000


def test_the_prompt_counts_batches_of_1000_at_one_request_per_second() -> None:
    items = [{"id": f"u{n}", "collection": None} for n in range(2500)]
    text = prompt_for("completed", error_items=items, error_count=2500)
    assert "- no collection (users or tenants): 2,500 ids, 3 requests of at most 1,000" in text
    assert "POST /v1/users/bulk/delete (Knock has been seen to use this name)" in text
    assert '{"user_ids": [...]}' in text
    assert "1 request per second: the 3 requests take at least 2 s" in text


def test_an_unknown_job_name_gets_no_guess() -> None:
    text = prompt_for("completed", name="workflows.mystery")
    assert "knock-mcp does not know which Knock bulk endpoint runs `workflows.mystery` jobs" in text
    assert "POST /v1" not in text


def test_message_jobs_are_explained_not_resubmitted() -> None:
    text = prompt_for("completed", name="messages.unread")
    assert "POST /v1/channels/{channel_id}/messages/bulk/unread" in text
    assert "does not take the failed ids" in text


def test_inferred_names_say_so() -> None:
    endpoint = endpoint_for("tenants.delete")
    assert endpoint is not None
    assert not endpoint.observed
    assert "inferred from the name" in prompt_for("completed", name="tenants.delete")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_prompt_through_the_server(settings: Settings, fake_knock: FakeKnock, mode: str) -> None:
    async with Client(create_server(settings), mode=mode) as client:
        (listed,) = (await client.list_prompts()).prompts
        assert listed.name == "retry_failed_items"
        assert [(argument.name, argument.required) for argument in listed.arguments or []] == [("id", True)]
        result = await client.get_prompt("retry_failed_items", {"id": load_fixture("completed")["id"]})
        (message,) = result.messages
        assert message.role == "user"
        assert isinstance(message.content, TextContent)
        assert "Knock lists 3 failed items:" in message.content.text
        with pytest.raises(MCPError) as raised:
            await client.get_prompt("retry_failed_items", {"id": "not-a-uuid"})
        assert raised.value.error.code == INVALID_PARAMS
        assert "'not-a-uuid' is not a bulk operation id" in raised.value.error.message
        fake_knock.fail_next(Reply(403, b"{}"))
        with pytest.raises(MCPError, match="Knock refused access"):
            await client.get_prompt("retry_failed_items", {"id": load_fixture("processing")["id"]})
