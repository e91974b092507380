"""`column_paths` (the field list of a block's parsed fields, key by key) finds exactly
the paths `field_paths` finds object by object."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kubelogs.store.block import column_paths, field_paths

keys = st.sampled_from(["a", "b", "log", "level", "x.y", ""])
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3) | st.just({}),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=10,
)
objects = st.dictionaries(keys, values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(objs=st.lists(objects, max_size=8))
def test_column_paths_equal_the_union_of_field_paths(objs: list[dict[str, Any]]) -> None:
    expected: set[str] = set()
    for obj in objs:
        field_paths(obj, expected)
    found: set[str] = set()

    column_paths(objs, found)

    assert expected == found


def test_a_key_with_objects_and_values_is_both_a_leaf_and_a_prefix() -> None:
    found: set[str] = set()

    column_paths([{"a": {"b": 1}}, {"a": "text"}, {"a": {}}, {"c": [{"d": 1}]}], found)

    assert {"a", "a.b", "c"} == found
