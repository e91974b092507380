"""The message column never rules out a message the exact matcher accepts."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from kubelogs.store.block import BlockBuilder, Piece, Runs
from kubelogs.store.column import SearchColumn, lines_with, lowered, needles
from kubelogs.store.group import WriteGroup
from kubelogs.store.matcher import text_matcher

# Text with what makes folding and line splitting hard: newlines, final sigma, dotted I,
# German sharp s, ligatures, combining marks, lone surrogates, punctuation.
_ALPHABET = (
    st.sampled_from([*"aAbZz09_ -.:'\n\r\tΣσςİıßẞﬁ\u0307\u2028é", "\ud800", "\U0001f600", "ǅ", "Ό"])
    | st.characters()
)
_MESSAGES = st.lists(st.text(_ALPHABET, max_size=30), min_size=1, max_size=12)


def column_of(pieces: list[list[str]]) -> bytes:
    """The lowered message column of a block built from `pieces`, as a reader sees it."""
    builder = BlockBuilder()
    for messages in pieces:
        rows = list(range(len(messages)))
        group = WriteGroup("", rows, rows, messages=messages)
        builder.add(Piece(group, messages, 0, len(messages), Runs([1], [""], [len(messages)])))
    return lowered(builder.finish().text)


@st.composite
def query_for(draw: st.DrawFn, message: str) -> tuple[str, bool]:
    """A value taken from `message` (so that it often matches), maybe re-cased, maybe
    with a wildcard, as a word/wildcard (False) or a phrase (True)."""
    if message:
        a = draw(st.integers(0, len(message) - 1))
        b = draw(st.integers(a + 1, len(message)))
        value = message[a:b]
    else:
        value = draw(st.text(_ALPHABET, max_size=5))
    value = draw(st.sampled_from([value, value.upper(), value.lower(), value.swapcase()]))
    phrase = draw(st.booleans())
    if not phrase and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value)))
        value = value[:i] + "*" + value[i:]
    return value, phrase


@given(st.lists(_MESSAGES, min_size=1, max_size=3), st.data())
@example([["ΟΔΟΣ", "x"]], None)
def test_matching_messages_are_on_selected_lines(
    pieces: list[list[str]], data: st.DataObject | None
) -> None:
    messages = [m for p in pieces for m in p]
    column = column_of(pieces)
    assert len(messages) == column.count(b"\n") + 1
    queries = [("οδος", False), ("ΟΔΟΣ", True), ("σ", False)]
    if data is not None:
        message = data.draw(st.sampled_from(messages))
        queries.append(data.draw(query_for(message)))

    for value, phrase in queries:
        accepts = text_matcher(value, phrase)
        required = needles(value, phrase)
        if not required:
            continue
        selected = set(lines_with(column, required))
        for row, message in enumerate(messages):
            if accepts(message):
                assert row in selected, (value, phrase, message)
                assert all(n in column for n in required)


@given(_MESSAGES)
def test_each_line_is_its_lower_cased_message(messages: list[str]) -> None:
    """Lower-casing the joined block is lower-casing each message (line ``i`` is
    document ``i``); newlines inside a message become spaces."""
    lines = column_of([messages]).split(b"\n")

    expected = [m.replace("\n", " ").lower().encode("utf-8", "surrogatepass") for m in messages]
    assert expected == lines


def test_needles_are_the_words_the_matcher_requires() -> None:
    assert (b"conn", b"refused", b"caf\xc3\xa9") == needles("Conn-REFUSED café", phrase=True)
    assert (b"java", b"lang", b"nullpointerexception") == needles(
        "java.lang.NullPointerException", phrase=False
    )
    assert (b"conn", b"ref") == needles("Conn*REF", phrase=False)
    assert (b"conn", b"ref") == needles("conn*ref", phrase=True)  # quoted: words
    assert (b"::",) == needles("::", phrase=False)  # no word: a substring match
    assert () == needles("*", phrase=False)
    assert () == needles("\n", phrase=True)  # lines cannot hold a newline


def test_lines_with_requires_every_needle_on_the_same_line() -> None:
    column = column_of([["Request failed", "request ok", "failed twice"], ["x failed request"]])

    assert [0, 3] == lines_with(column, (b"request", b"failed"))
    assert [0, 2, 3] == lines_with(column, (b"failed",))
    assert [] == lines_with(column, (b"request", b"twice"))
    assert [] == lines_with(column, (b"absent",))


def test_lines_with_counts_lines_across_many_occurrences() -> None:
    messages = [f"line {i} {'hit ' * (i % 3)}end" for i in range(1000)]

    rows = lines_with(column_of([messages[:400], messages[400:]]), (b"hit",))

    assert [i for i in range(1000) if i % 3] == rows


_ASCII_TEXT = st.lists(
    st.sampled_from([*"aAbB01239-:._ \n", "ID-", "Ab12", "0000", "aB12-0000"]), max_size=80
).map("".join)


@given(
    _ASCII_TEXT,
    st.lists(
        st.text(st.sampled_from([*"ab0129-:._"]), min_size=1, max_size=8), min_size=1, max_size=3
    ),
)
@example("x AB12-0000 y\nab12-0000\nAB12-000", ["ab12-0000"])
@example("0000 0000\n" * 300, ["0000"])  # more anchor hits than the limit: lower-cases
def test_search_column_answers_as_the_lowered_column(text: str, values: list[str]) -> None:
    """Anchored search in the original text finds exactly what `bytes.find` finds in
    the lower-cased column."""
    column = text.encode()
    required = tuple(dict.fromkeys(v.encode() for v in values))
    low = lowered(column)

    assert lines_with(low, required) == SearchColumn(column).lines_with(required)
    for needle in required:
        assert (needle in low) == SearchColumn(column).contains(needle)


def test_anchored_search_does_not_lower_the_column() -> None:
    text = b"\n".join(b"GET /api/v1/orders/%d trace=AB%dCD" % (i, i * 7919) for i in range(2000))
    column = SearchColumn(text)

    assert [1000] == column.lines_with((b"ab7919000cd",))
    assert column.contains(b"orders/1999")
    assert not column.contains(b"orders/2000")
    assert column._lowered is None
    assert 2000 == len(column.lines_with((b"get",)))  # no anchor: lower-cases
    assert column._lowered is not None
