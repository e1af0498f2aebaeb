"""The row check of SQLite search: the tokens made here are the tokens FTS5's unicode61 makes,
for any text, and an ASCII row is matched by a regular expression, which must say what the
token rules say for every row, word and phrase."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dataflow_lite.store import sqlite_words
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE, SEARCH_TABLE_DDL

# Few letters, digits, upper case and separators, so that prefixes, phrases and borders meet.
ascii_text = st.text(alphabet="abAB01 -_.\n\t", max_size=30)
phrases = st.lists(st.tuples(ascii_text, st.booleans()), max_size=3)


def by_tokens(
    body: str, positive: list[tuple[str, bool]], negative: list[tuple[str, bool]]
) -> bool:
    """The token rules, row split into tokens: what the regular expressions stand for."""
    words = sqlite_words.tokens(body)

    def holds(phrase: tuple[str, bool]) -> bool:
        return sqlite_words._holds(words, sqlite_words.tokens(phrase[0]), phrase[1])

    return all(holds(p) for p in positive) and not any(holds(p) for p in negative)


@example(body="ab_01", positive=[("ab 0", True)], negative=[])  # a phrase across a separator
@example(body="aab", positive=[("ab", True)], negative=[])  # a prefix begins a token, only
@example(body="ab", positive=[("ab", False)], negative=[(" ", True)])  # an empty phrase
@given(body=ascii_text, positive=phrases, negative=phrases)
def test_an_ascii_row_matches_as_its_tokens_do(body, positive, negative):
    spec = sqlite_words.spec(positive, negative)
    assert sqlite_words.matches(body, spec) == by_tokens(body, positive, negative)


def test_a_row_with_other_characters_still_folds_them():
    spec = sqlite_words.spec([("cafe", False)], [])
    assert sqlite_words.matches("Café au lait", spec)
    assert not sqlite_words.matches("cafeteria", spec)


@pytest.fixture(scope="module")
def fts5():
    """A full-text table as the catalog makes it, and its tokens by position."""
    connection = sqlite3.connect(":memory:")
    connection.execute(SEARCH_TABLE_DDL)
    connection.execute(f"CREATE VIRTUAL TABLE terms USING fts5vocab({SEARCH_TABLE}, 'instance')")
    yield connection
    connection.close()


def _fts5_tokens(connection: sqlite3.Connection, text: str) -> list[str]:
    connection.execute(f"DELETE FROM {SEARCH_TABLE}")
    connection.execute(f"INSERT INTO {SEARCH_TABLE} (rowid, body) VALUES (1, ?)", (text,))
    return [row[0] for row in connection.execute("SELECT term FROM terms ORDER BY offset")]


# Scientific text where Unicode and FTS5 part ways: the micro sign folds to mu, an overline
# parts tokens, a Tamil letter keeps its mark, diacritics go.
@example(text="bead 5 µm at 25°C, x\u0305y, ஔவையார், Ǣther, Ångström e\u0301")
@given(text=st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
# A text's first characters of each block of 256 are read from SQLite once (1.5 ms a block):
# an example of 40 characters from all over Unicode may read 40 blocks.
@settings(deadline=None)
def test_tokens_are_the_tokens_fts5_makes(fts5, text):
    """What PostgreSQL lists, and what a walked row is checked against, is what FTS5 lists; and
    the tokens spelled again make themselves (PostgreSQL keeps a row's text so)."""
    made = sqlite_words.tokens(text)
    assert made == _fts5_tokens(fts5, text)
    assert sqlite_words.tokens(" ".join(made)) == made


def test_no_character_becomes_one_that_parts_tokens_or_is_special():
    """PostgreSQL's spelled text and lexemes rely on it: no token holds a space, a quote, or a
    character special to ``LIKE``, and a token read again is itself."""
    special = set(" '%_\\")
    for number in range(0x110000 >> 8):
        for read in sqlite_words._block(number):
            if read in (sqlite_words._PARTS, sqlite_words._DROPPED):
                continue
            assert read not in special
            assert sqlite_words.tokens(read) == [read]
