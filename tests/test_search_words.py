"""The row check of SQLite search: an ASCII row is matched by a regular expression, which must
say what the token rules say (FTS5's unicode61) for every row, word and phrase."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from dataflow_lite.store import sqlite_words

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
