"""What knock-mcp shows of failed items did not change when they came to be held packed.

`outputs` renders every view of the failed items (bounded operations at many offsets and limits,
pages of failed ids per collection, the summary, the operation's own dumps) for each fixture
payload. `snapshots/packed_views.json` holds the SHA-256 of each output as the list-based code
computed it, when items were still a validated `list[ErrorItem]`: `digests()` of this module, run
with that code's `src` first on PYTHONPATH (commit 9b8842b; the summaries from 824689a, whose
wording changed while items were still a list). `fixtures/varied_items.json` holds items
of every shape the packing must keep: collections absent, null, repeated and non-ASCII, ids of up to
2,000 characters, added fields of every JSON type (Infinity and NaN too) in any order, some over
the 5,000 characters a view shows.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from knock_mcp.failed_items import failed_items_page
from knock_mcp.models import BulkOperation
from knock_mcp.summary import render_summary, summarize
from knock_mcp.views import bound_operation, compact_json
from tests.support.payloads import FIXTURES

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "packed_views.json"
NOW = datetime(2026, 11, 28, 10, 5, tzinfo=UTC)
VIEWS = [(0, 0), (1, 0), (50, 0), (50, 37), (120, 290), (1000, 0), (1000, 399), (10, 400), (10, 2**63)]
COLLECTIONS = [None, "projects", "späce ☃", "nope"]
PAGE_LIMITS = [3, 100, 1000]
# A few pages of the smallest limit show the cursor at work; all of them would only repeat it.
MAX_PAGES = 5


def payload_names() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def outputs(name: str) -> dict[str, str]:
    """Every rendering of the operation in fixture `name`, by case."""
    operation = BulkOperation.model_validate_json((FIXTURES / f"{name}.json").read_bytes())
    rendered = {
        "dump_json": operation.model_dump_json(by_alias=True),
        "dump_unset": json.dumps(operation.model_dump(mode="json", by_alias=True, exclude_unset=True)),
    }
    for limit, offset in VIEWS:
        view = bound_operation(operation, limit, offset)
        structured = json.dumps(view.model_dump(mode="json", by_alias=True))
        rendered[f"view {limit} {offset}"] = f"{compact_json(view)}\n{structured}"
    for collection in COLLECTIONS:
        for limit in PAGE_LIMITS:
            cursor = None
            for number in range(MAX_PAGES):
                page = failed_items_page(operation, collection, cursor, limit)
                structured = json.dumps(page.model_dump(mode="json"))
                rendered[f"page {collection} {limit} {number}"] = f"{compact_json(page)}\n{structured}"
                if (cursor := page.next_cursor) is None:
                    break
    summary = summarize(operation, NOW)
    rendered["summary"] = f"{render_summary(summary)}\n{json.dumps(summary.model_dump(mode='json'))}"
    return rendered


def digests() -> dict[str, dict[str, str]]:
    return {
        name: {case: hashlib.sha256(text.encode()).hexdigest() for case, text in outputs(name).items()}
        for name in payload_names()
    }


@pytest.mark.parametrize("name", payload_names())
def test_every_view_of_the_failed_items_is_what_it_was_before_they_were_packed(name: str) -> None:
    before = json.loads(SNAPSHOT.read_text())[name]
    now = {case: hashlib.sha256(text.encode()).hexdigest() for case, text in outputs(name).items()}
    changed = sorted(case for case in before.keys() | now.keys() if before.get(case) != now.get(case))
    assert not changed, f"{name}: these outputs differ from the list-based code's: {changed}"
    # The cases ran through real pages: the varied payload has more items than one page shows.
    assert name != "varied_items" or "page None 3 4" in now
