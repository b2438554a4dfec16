"""The bulk operation as Knock's OpenAPI contract describes it.

Unknown fields are accepted and kept (on the operation and on each error item), so Knock adding a
field never breaks a user, and nothing Knock said is dropped on the way to the model.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from itertools import accumulate
from typing import Annotated, Any, NotRequired, cast, overload
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema, from_json, to_json
from pydantic_core.core_schema import SerializationInfo
from typing_extensions import TypedDict

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


class _ErrorItemFields(TypedDict):
    """An error item as Knock's JSON gives it: validated exactly as `ErrorItem` (the same checks,
    the same error messages) into a plain dict, which is cheaper to build than a model."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    id: Text
    collection: NotRequired[Text | None]


class ErrorItems(Sequence[ErrorItem]):
    """Knock's `error_items`, validated once and then held packed.

    Validated items cost about 12 bytes of Python objects per byte of their JSON (a 12,000-item
    operation: 7 MB for 580 KB), and every page, count or summary of a cached operation would
    otherwise walk them all. Packed, the ids are one UTF-8 string with an array of where each ends,
    each item's collection is a small number into a table of the distinct ones, and the fields Knock
    added to an item are kept as their JSON: less than the JSON's own size. Pages and counts read the
    packed form directly; an `ErrorItem` is rebuilt, without validation, only for an item shown.
    Fields Knock added hold JSON values, as they come from Knock's JSON.
    """

    _kinds: tuple[str | _Unset | None, ...]
    __slots__ = ("_extra_ends", "_extras", "_id_ends", "_ids", "_kind_codes", "_kinds")

    def __init__(self, items: Iterable[ErrorItem] = ()) -> None:
        self._pack([_fields_of(item) for item in items])

    @classmethod
    def _from_fields(cls, items: list[_ErrorItemFields]) -> ErrorItems:
        packed = cls.__new__(cls)
        packed._pack(cast("list[dict[str, Any]]", items))
        return packed

    def _pack(self, items: list[dict[str, Any]]) -> None:
        ids = [item["id"] for item in items]
        if all(map(str.isascii, ids)):
            # One byte per character: encoded at once, each id as long in bytes as in characters.
            self._ids, id_lengths = "".join(ids).encode(), map(len, ids)
        else:
            encoded = list(map(str.encode, ids))
            self._ids, id_lengths = b"".join(encoded), map(len, encoded)
        self._id_ends = _offsets(accumulate(id_lengths), len(self._ids))
        # A collection Knock left out is kept apart from a null one: the item dumps without the field
        # (exclude_unset), as it did before it was packed.
        kinds = [item.get("collection", _UNSET) for item in items]
        self._kinds = tuple(dict.fromkeys(kinds))
        code_of = {kind: code for code, kind in enumerate(self._kinds)}
        typecode = _smallest_typecode(len(self._kinds))
        codes = map(code_of.__getitem__, kinds)
        # An array is filled from bytes at once, from any other iterable one number at a time.
        self._kind_codes = array(typecode, bytes(codes) if typecode == "B" else codes)
        given = len(kinds) - kinds.count(_UNSET)
        if sum(map(len, items)) == len(items) + given:
            self._extras, self._extra_ends = b"", None  # no item carries a field Knock added
            return
        # Only an item with more fields than its id and collection carries some Knock added: the
        # others, most of them as a rule, are neither copied nor written out.
        # inf_nan_mode="constants" so that every value Knock's JSON can hold reads back the same.
        extras = [
            to_json(_added_fields(item), inf_nan_mode="constants")
            if len(item) > (1 if kind is _UNSET else 2)
            else b""
            for item, kind in zip(items, kinds, strict=True)
        ]
        self._extras = b"".join(extras)
        self._extra_ends = _offsets(accumulate(map(len, extras)), len(self._extras))

    def __len__(self) -> int:
        return len(self._kind_codes)

    @overload
    def __getitem__(self, index: int) -> ErrorItem: ...
    @overload
    def __getitem__(self, index: slice) -> list[ErrorItem]: ...
    def __getitem__(self, index: int | slice) -> ErrorItem | list[ErrorItem]:
        if isinstance(index, slice):
            return [self._item(position) for position in range(len(self))[index]]
        return self._item(range(len(self))[index])

    def __iter__(self) -> Iterator[ErrorItem]:
        return map(self._item, range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ErrorItems):
            return NotImplemented
        if self._packed == other._packed:
            return True
        # Equal items may still pack differently (an absent collection and a null one compare equal,
        # as may added fields written differently): compare them as the validated items compared.
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ErrorItems({len(self):,} items, {self.nbytes:,} bytes)"

    @property
    def nbytes(self) -> int:
        """Memory held, objects' own overhead included."""
        parts = (
            self,
            self._ids,
            self._id_ends,
            self._kinds,
            self._kind_codes,
            self._extras,
            self._extra_ends,
        )
        return sum(map(sys.getsizeof, parts)) + sum(map(sys.getsizeof, self._kinds))

    def id(self, position: int) -> str:
        """The id of the item at `position` (from 0)."""
        start = self._id_ends[position - 1] if position else 0
        return self._ids[start : self._id_ends[position]].decode()

    def dumped_chars(self, position: int) -> int:
        """Characters in the item's JSON, as `ErrorItem.model_dump_json()` writes it."""
        return len(to_json(self._fields(position, all_fields=True), inf_nan_mode="null").decode())

    def part(self, start: int, stop: int) -> ErrorItems:
        """The items from `start` up to `stop` (0 <= start <= stop <= len), still packed."""
        part = ErrorItems.__new__(ErrorItems)
        part._ids, part._id_ends = _cut(self._ids, self._id_ends, start, stop)
        part._kinds, part._kind_codes = self._kinds, self._kind_codes[start:stop]
        if self._extra_ends is None:
            part._extras, part._extra_ends = b"", None
        else:
            part._extras, part._extra_ends = _cut(self._extras, self._extra_ends, start, stop)
        return part

    def collection_counts(self) -> Counter[str | None]:
        """Items per collection, collections in the order they first appear: what a `Counter` over
        the items' collections gives, without building the items."""
        counts: Counter[str | None] = Counter()
        for code, count in sorted(Counter(self._kind_codes).items()):
            counts[_given(self._kinds[code])] += count
        return counts

    def positions_in(self, collection: str | None) -> list[int]:
        """Positions of the items of one collection, in Knock's order."""
        wanted = {code for code, kind in enumerate(self._kinds) if _given(kind) == collection}
        return [position for position, code in enumerate(self._kind_codes) if code in wanted]

    def collection(self, position: int) -> str | None:
        """The collection of the item at `position` (from 0)."""
        return _given(self._kinds[self._kind_codes[position]])

    def _dump(self, info: SerializationInfo) -> list[dict[str, Any]] | list[ErrorItem]:
        """Dumped as the list of items was. Plain dicts give the same output unless an option asks
        which fields were set or are defaults; building 12,000 models would cost several times more."""
        if info.exclude_unset or info.exclude_defaults or info.exclude_none or info.include or info.exclude:
            return list(self)
        return [self._fields(position, all_fields=True) for position in range(len(self))]

    @property
    def _packed(self) -> tuple[object, ...]:
        return (self._ids, self._id_ends, self._kinds, self._kind_codes, self._extras, self._extra_ends)

    def _item(self, position: int) -> ErrorItem:
        values = self._fields(position, all_fields=False)
        # Validated when Knock's answer was read: building it again needs no second check.
        return ErrorItem.model_construct(set(values), **values)

    def _fields(self, position: int, *, all_fields: bool) -> dict[str, Any]:
        """The item's fields as Knock gave them, or with `all_fields` as a dump shows them (a
        collection Knock left out shows as null)."""
        values: dict[str, Any] = {"id": self.id(position)}
        collection = self._kinds[self._kind_codes[position]]
        if all_fields or not isinstance(collection, _Unset):
            values["collection"] = _given(collection)
        if self._extra_ends is not None:
            start = self._extra_ends[position - 1] if position else 0
            end = self._extra_ends[position]
            if end > start:
                values.update(from_json(self._extras[start:end]))
        return values

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """Knock's JSON is validated into plain dicts and packed; Python values (tests, the demo)
        as `list[ErrorItem]`; dumped as that list."""
        as_models = handler.generate_schema(list[ErrorItem])

        def keep_or_pack(value: Any, validate: core_schema.ValidatorFunctionWrapHandler) -> ErrorItems:
            return value if isinstance(value, ErrorItems) else cls(validate(value))

        return core_schema.json_or_python_schema(
            json_schema=core_schema.no_info_after_validator_function(
                cls._from_fields, handler.generate_schema(list[_ErrorItemFields])
            ),
            python_schema=core_schema.no_info_wrap_validator_function(keep_or_pack, as_models),
            serialization=core_schema.plain_serializer_function_ser_schema(cls._dump, info_arg=True),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """Described as `list[ErrorItem]`, as it was before it was packed: the same schema."""
        assert schema["type"] == "json-or-python"
        return handler(schema["python_schema"])


class _Unset:
    """Marks a collection Knock left out of an item, as distinct from one it gave as null."""

    __slots__ = ()


_UNSET = _Unset()


def _given(collection: str | _Unset | None) -> str | None:
    return None if isinstance(collection, _Unset) else collection


def _fields_of(item: ErrorItem) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": item.id}
    if "collection" in item.__pydantic_fields_set__:
        fields["collection"] = item.collection
    return fields | (item.__pydantic_extra__ or {})


def _added_fields(item: dict[str, Any]) -> dict[str, Any]:
    """The item less its id and collection; a copy less two keys is cheaper than a comprehension."""
    added = item.copy()
    del added["id"]
    added.pop("collection", None)
    return added


def _cut(blob: bytes, ends: array[int], start: int, stop: int) -> tuple[bytes, array[int]]:
    """Entries `start` to `stop` of values stored back to back in `blob`, each ending at `ends`."""
    first = ends[start - 1] if start else 0
    last = ends[stop - 1] if stop > start else first
    return blob[first:last], array(ends.typecode, [end - first for end in ends[start:stop]])


def _smallest_typecode(count: int) -> str:
    """The array typecode that holds numbers below `count` in the fewest bytes."""
    return "B" if count <= 2**8 else "H" if count <= 2**16 else "I"


def _offsets(ends: Iterable[int], largest: int) -> array[int]:
    return array("I" if largest < 2**32 else "Q", ends)


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
    error_items: ErrorItems | None = Field(
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
# What a UUID holds after its first 8 digits. It starts with a literal, which the regex engine finds
# by a fast scan, whereas a search for a whole UUID tries it at every character: ~0.4 CPU-s in a
# 10 MB id, ~1.7 CPU-s when the 10 MB are hex digits.
_UUID_MIDDLE = re.compile(r"-[0-9a-f]{4}-", re.IGNORECASE)


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
    raise InvalidOperationId(raw, _first_uuid_in(raw))


def _first_uuid_in(text: str) -> str | None:
    """The first UUID in `text`, lower-case, or None. A UUID starts 8 characters before its first
    middle, so each middle found is tried once, anchored there: linear in the text, however many
    middles lead nowhere."""
    start = 0
    while (middle := _UUID_MIDDLE.search(text, start)) is not None:
        if middle.start() >= 8 and (found := _UUID_PATTERN.match(text, middle.start() - 8)):
            return found.group(0).lower()
        start = middle.start() + 1
    return None
