"""The bulk operation as Knock's OpenAPI contract describes it.

Unknown fields are accepted and kept (on the operation and on each error item), so Knock adding a
field never breaks a user, and nothing Knock said is dropped on the way to the model.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from knock_mcp.errors import InvalidOperationId


def _as_utc(value: datetime) -> datetime:
    """Knock sends UTC; a timestamp without an offset is read as UTC rather than as local time."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the timestamp is out of range once converted to UTC") from None


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
# Knock's counts are 64-bit integers; anything larger is a broken answer, not a count to reason about.
Count = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
# Knock's names, ids and paths are short; a longer one is a broken answer, and bounding them keeps
# every result that shows them bounded too.
MAX_TEXT_CHARS = 2000
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
# Bulk endpoints take at most 1,000 entities per call: one page of failed items is one resubmission.
MAX_ITEMS_PER_PAGE = 1000
# Past this many characters of failed items a page of a result (get_bulk_operation's items,
# list_failed_items' ids) stops early: with the items shown twice (structured content and text) and
# the operation's own fields, one result stays near 100 KB.
ERROR_ITEMS_CHAR_BUDGET = 50_000


class BulkOperationStatus(StrEnum):
    """Lifecycle: queued -> processing -> completed or failed. The last two are final."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (BulkOperationStatus.COMPLETED, BulkOperationStatus.FAILED)


class ErrorItem(BaseModel):
    """One entity the operation failed to process."""

    model_config = ConfigDict(extra="allow")

    id: Text = Field(description="Id of the entity (user, object, tenant, ...) that failed.")
    collection: Text | None = Field(
        default=None,
        description="Object collection of the entity; null for users and tenants.",
    )


class BulkOperation(BaseModel):
    """A Knock bulk operation: `GET /v1/bulk_operations/{id}`.

    One deliberate departure from the spec: `progress_path` is a plain string, not a URI, because
    real responses carry a relative path. It is data to show and is never requested.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    typename: Text = Field(alias="__typename", description="Always 'BulkOperation'.")
    id: UUID = Field(description="Unique identifier of the bulk operation.")
    name: Text = Field(description="What the operation does, e.g. 'users.identify'.")
    status: BulkOperationStatus = Field(description="queued, processing, completed or failed.")
    estimated_total_rows: Count = Field(description="Knock's estimate of the rows to process; may be off.")
    processed_rows: Count = Field(description="Rows processed so far; may exceed the estimate.")
    success_count: Count = Field(description="Rows processed successfully.")
    error_count: Count | None = Field(default=None, description="Rows that failed; absent on some answers.")
    error_items: list[ErrorItem] | None = Field(
        default=None, description="Entities that failed; absent on some answers."
    )
    progress_path: Text | None = Field(default=None, description="Knock's path for this operation.")
    inserted_at: Timestamp = Field(description="When the operation was created (queued).")
    updated_at: Timestamp = Field(description="When Knock last updated the operation.")
    started_at: Timestamp | None = Field(default=None, description="When processing started.")
    completed_at: Timestamp | None = Field(default=None, description="When the operation completed.")
    failed_at: Timestamp | None = Field(default=None, description="When the operation failed.")


_UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_UNDASHED_UUID_PATTERN = re.compile(r"[0-9a-f]{32}", re.IGNORECASE)


def parse_operation_id(raw: str) -> str:
    """Return the canonical (lower-case, dashed) form of a bulk operation id, or raise `InvalidOperationId`.

    Only a UUID is accepted (surrounding spaces, upper case and the 32-digit form without dashes are
    normalised), so nothing but `/v1/bulk_operations/<uuid>` can ever be requested. When a UUID is
    buried in what was pasted (a progress path, a URL), the error suggests it.
    """
    candidate = raw.strip()
    if _UUID_PATTERN.fullmatch(candidate):
        return candidate.lower()
    if _UNDASHED_UUID_PATTERN.fullmatch(candidate):
        return str(UUID(hex=candidate))
    buried = _UUID_PATTERN.search(raw)
    raise InvalidOperationId(raw, buried.group(0).lower() if buried else None)
