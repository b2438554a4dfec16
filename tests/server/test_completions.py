"""Completions: the ids this server read recently with the caller's own key, most recent first."""

from __future__ import annotations

import pytest
from mcp import Client, MCPError
from mcp.types import PromptReference, ResourceTemplateReference
from pydantic import SecretStr

from knock_mcp.recent_ids import RecentIds
from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from tests.support.fake_knock import FakeKnock
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture

pytestmark = pytest.mark.anyio

COMPLETED_ID = load_fixture("completed")["id"]
PROCESSING_ID = load_fixture("processing")["id"]
FAILED_ID = load_fixture("failed")["id"]
OTHER_KEY = "sk_test_other_environment"
PROMPT = PromptReference(name="retry_failed_items")
TEMPLATE = ResourceTemplateReference(uri="knock://bulk_operations/{id}")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_ids_read_with_the_callers_key_most_recent_first(
    settings: Settings, fake_knock: FakeKnock, mode: str
) -> None:
    keys = {"a": SecretStr(SECRET), "b": SecretStr(OTHER_KEY)}
    serving = ["a"]
    fake_knock.owners[FAILED_ID] = OTHER_KEY
    async with Client(create_server(settings, api_key=lambda: keys[serving[0]]), mode=mode) as client:
        assert client.server_capabilities.completions is not None
        nothing_yet = await client.complete(PROMPT, {"name": "id", "value": ""})
        assert nothing_yet.completion.values == []
        await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
        await client.read_resource(f"knock://bulk_operations/{PROCESSING_ID}")
        unknown = await client.call_tool("summarize_bulk_operation", {"id": FAILED_ID})
        assert unknown.is_error, "key a cannot see b's operation, so it is not one of a's ids"
        serving[0] = "b"
        await client.call_tool("summarize_bulk_operation", {"id": FAILED_ID})

        serving[0] = "a"
        for ref in (PROMPT, TEMPLATE):
            offered = await client.complete(ref, {"name": "id", "value": ""})
            assert offered.completion.values == [PROCESSING_ID, COMPLETED_ID]
            assert offered.completion.total == 2
        # Reading the completed one again makes it the most recent.
        await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID})
        again = await client.complete(PROMPT, {"name": "id", "value": ""})
        assert again.completion.values == [COMPLETED_ID, PROCESSING_ID]
        typed = COMPLETED_ID[:6].upper()
        assert (await client.complete(PROMPT, {"name": "id", "value": typed})).completion.values == [
            COMPLETED_ID
        ]

        serving[0] = "b"
        assert (await client.complete(TEMPLATE, {"name": "id", "value": ""})).completion.values == [FAILED_ID]


async def test_completing_what_this_server_does_not_have_is_an_error_that_says_what_it_has(
    settings: Settings,
) -> None:
    async with Client(create_server(settings), mode="legacy") as client:
        for ref, argument, says in (
            (PromptReference(name="test_prompt_with_arguments"), "arg1", "its prompt is retry_failed_items"),
            (ResourceTemplateReference(uri="test://template/{id}/data"), "id", "its template is knock://"),
            (PROMPT, "collection", "the one argument to complete is id"),
        ):
            with pytest.raises(MCPError, match=says) as refused:
                await client.complete(ref, {"name": argument, "value": ""})
            assert refused.value.error.code == -32602


def test_recent_ids_are_bounded_per_key_and_in_keys() -> None:
    recent = RecentIds(per_key=3, keys=2)
    for n in range(5):
        recent.note((b"a", f"id-{n}"))
    recent.note((b"a", "id-2"))  # read again: the most recent
    assert recent.for_fingerprint(b"a") == ["id-2", "id-4", "id-3"]
    recent.note((b"b", "id-b"))
    recent.note((b"c", "id-c"))  # a third key: the least recently active one (a) goes
    assert recent.for_fingerprint(b"a") == []
    assert recent.for_fingerprint(b"b") == ["id-b"]
    assert recent.for_fingerprint(b"c") == ["id-c"]
