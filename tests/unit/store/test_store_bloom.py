"""Token filters never reject a block holding a matching message; they reject most others."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from kubelogs.store import bloom
from kubelogs.store.matcher import text_matcher


@given(st.lists(st.text(max_size=40), min_size=1, max_size=30), st.data())
def test_filter_has_no_false_negatives(messages: list[str], data: st.DataObject) -> None:
    """Any word or phrase that the exact matcher finds passes the block's filter."""
    blob = bloom.build(messages)
    message = data.draw(st.sampled_from(messages))
    words = message.split()
    if not words:
        return
    start = data.draw(st.integers(0, len(words) - 1))
    query = " ".join(words[start : start + data.draw(st.integers(1, 3))])

    if text_matcher(query, phrase=True)(message):
        assert bloom.may_contain(blob, bloom.filter_words(query))


def test_filter_words_fold_case_and_split_like_the_matcher() -> None:
    assert [b"conn", b"refused", b"caf"] == bloom.filter_words("Conn-REFUSED café")


def test_filter_rejects_most_absent_words() -> None:
    rng = random.Random(1)
    present = [f"{rng.getrandbits(64):016x}" for _ in range(5000)]
    absent = [f"{rng.getrandbits(64):016x}" for _ in range(5000)]
    blob = bloom.build([" ".join(present[i : i + 10]) for i in range(0, 5000, 10)])

    false_positives = sum(bloom.may_contain(blob, [w.encode()]) for w in absent)

    assert all(bloom.may_contain(blob, [w.encode()]) for w in present)
    assert false_positives < 0.03 * len(absent)


def test_unknown_filter_layout_never_rejects() -> None:
    assert bloom.may_contain(b"", [b"x"])
    assert bloom.may_contain(b"XX\x0a" + bytes(128), [b"x"])
