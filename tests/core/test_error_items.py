"""Failed items held packed (`ErrorItems`) behave exactly as the validated list they replace.

Each check compares the packed items with `list[ErrorItem]` validated from the same JSON: items,
slices, counts, dumps, equality and validation errors. The memory one 12,000-item operation holds
is measured with tracemalloc against its JSON (issue 14: at most 2x; it is ~0.5x).
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from knock_mcp.cache import estimated_memory
from knock_mcp.models import MAX_TEXT_CHARS, BulkOperation, ErrorItem, ErrorItems
from tests.support.payloads import load_fixture

AS_LIST = TypeAdapter(list[ErrorItem])
json_values = st.recursive(
    # NaN is left out: it is not equal to itself, so no two lists holding it compare equal.
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)

# Built once: a strategy built inside a draw is a new object each time (`sampled_from` takes a list, so
# hypothesis cannot cache it), validated again on every draw, which took half the generation time.
collection_names = st.lists(st.none() | st.text(max_size=12), min_size=1, max_size=4)
id_prefixes = st.text(max_size=8)
added_fields = st.dictionaries(st.sampled_from(["reason", "details", "Z"]), json_values, max_size=2)


@st.composite
def items_json(draw: st.DrawFn) -> bytes:
    """Failed items as Knock might send them: collections absent or null, added fields of any type."""
    collections = draw(collection_names)
    items = []
    for number in range(draw(st.integers(0, 60))):
        item: dict[str, Any] = {"id": draw(id_prefixes) + str(number)}
        if draw(st.booleans()):
            item["collection"] = collections[number % len(collections)]
        item |= draw(added_fields)
        items.append(item)
    return json.dumps(items).encode()


def packed(items: bytes) -> ErrorItems:
    """The items as knock-mcp reads them: inside Knock's answer."""
    operation = BulkOperation.model_validate_json(
        json.dumps(load_fixture("minimal")).encode()[:-1] + b', "error_items": ' + items + b"}"
    )
    assert operation.error_items is not None
    return operation.error_items


@given(items_json(), st.slices(70), st.integers(-80, 80))
def test_packed_items_read_back_as_the_validated_list(items: bytes, part: slice, index: int) -> None:
    expected, held = AS_LIST.validate_json(items), packed(items)

    assert len(held) == len(expected)
    assert list(held) == expected == held[:]
    assert [item.model_fields_set for item in held] == [item.model_fields_set for item in expected]
    assert held[part] == expected[part]
    if -len(expected) <= index < len(expected):
        assert held[index] == expected[index]
    else:
        with pytest.raises(IndexError):
            held[index]
    dumped = [item.model_dump(mode="json", exclude_unset=True) for item in expected]
    assert AS_LIST.dump_python(list(held), mode="json", exclude_unset=True) == dumped
    assert [held.id(position) for position in range(len(held))] == [item.id for item in expected]
    sizes = [len(item.model_dump_json()) for item in expected]
    assert [held.dumped_chars(position) for position in range(len(held))] == sizes
    start, stop, step = part.indices(len(expected))
    if step > 0 and start <= stop:
        assert list(held.part(start, stop)) == expected[start:stop]
        assert held.part(start, stop) == ErrorItems(expected[start:stop])


@given(items_json())
def test_counts_and_positions_are_those_of_the_validated_list(items: bytes) -> None:
    expected, held = AS_LIST.validate_json(items), packed(items)
    counts = Counter(item.collection for item in expected)

    # In the same order too: pages and summaries list collections as a Counter over the items did.
    assert list(held.collection_counts().items()) == list(counts.items())
    assert held.collection_counts().most_common() == counts.most_common()
    for collection in [*counts, "absent"]:
        expected_positions = [n for n, item in enumerate(expected) if item.collection == collection]
        assert held.positions_in(collection) == expected_positions
        assert all(held.collection(position) == collection for position in expected_positions)


@given(items_json())
def test_packed_items_compare_as_the_list_compared(items: bytes) -> None:
    held = packed(items)
    rebuilt = ErrorItems(AS_LIST.validate_json(items))

    assert held == rebuilt == ErrorItems(list(held))
    assert (
        BulkOperation.model_validate({"error_items": list(held)} | load_fixture("minimal")).error_items
        == held
    )
    # A collection given as null and one left out compare equal as items, so they do packed.
    with_null = [
        ErrorItem(id=item.id, collection=item.collection, **(item.model_extra or {})) for item in held
    ]
    assert ErrorItems(with_null) == held
    if len(held):
        assert held != ErrorItems(list(held)[1:])
        assert held != ErrorItems([*list(held)[:-1], ErrorItem(id=held[-1].id + "!", collection=None)])


@pytest.mark.parametrize(
    "ids",
    [
        [f"{'x' * (number % 13)}{number}" for number in range(300)],
        [f"{'é' * (number % 13)}{number}" for number in range(300)],
    ],
    ids=["ascii", "two bytes a character"],
)
def test_ids_of_varied_lengths_and_hundreds_of_collections_read_back(ids: list[str]) -> None:
    """Past 256 distinct collections their numbers take two bytes; ids are packed one way when all
    are ASCII and another when some are not."""
    items = [{"id": id_, "collection": f"c{number % 260}"} for number, id_ in enumerate(ids)]
    expected, held = AS_LIST.validate_python(items), packed(json.dumps(items).encode())

    assert list(held) == expected
    assert [held.id(position) for position in range(len(held))] == ids
    assert held.collection_counts() == Counter(item.collection for item in expected)


@pytest.mark.parametrize(
    "items",
    [
        [5],
        ["text"],
        [{}],
        [{"id": None}],
        [{"id": 7, "collection": 8}],
        [{"id": "x" * (MAX_TEXT_CHARS + 1), "collection": "y" * (MAX_TEXT_CHARS + 1)}],
        [{"id": "ok"}, {"collection": "projects"}, [], {"id": "also ok", "collection": []}],
        {"id": "not a list"},
        "not a list",
    ],
)
def test_a_broken_item_is_reported_as_the_list_reported_it(items: Any) -> None:
    body = json.dumps(load_fixture("minimal") | {"error_items": items}).encode()
    with pytest.raises(ValidationError) as packed_error:
        BulkOperation.model_validate_json(body)
    with pytest.raises(ValidationError) as list_error:
        AS_LIST.validate_json(json.dumps(items))

    as_packed = [(problem["loc"], problem["msg"]) for problem in packed_error.value.errors()]
    as_list = [(("error_items", *problem["loc"]), problem["msg"]) for problem in list_error.value.errors()]
    assert as_packed == as_list


def test_the_json_schema_is_that_of_the_list() -> None:
    for mode in ("validation", "serialization"):
        schema = BulkOperation.model_json_schema(mode=mode)
        assert schema["properties"]["error_items"]["anyOf"][0] == {
            "items": {"$ref": "#/$defs/ErrorItem"},
            "type": "array",
        }
        assert schema["$defs"]["ErrorItem"] == ErrorItem.model_json_schema(mode=mode)


def test_a_12000_item_operation_holds_less_than_twice_its_json() -> None:
    items = [{"id": f"project_{n:05d}", "collection": "projects" if n % 4 else None} for n in range(12_000)]
    body = json.dumps(load_fixture("completed") | {"error_items": items}).encode()
    # One read first, so that what any read leaves behind (pydantic's caches) is not counted.
    BulkOperation.model_validate_json(body)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        operation = BulkOperation.model_validate_json(body)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert held <= 2 * len(body)
    # The cache's budget counts what an entry holds, without writing the operation out again.
    assert held / 2 <= estimated_memory(operation) <= 2 * held
