"""A dataset's words as PostgreSQL holds them: the ``body`` and ``tokens`` of a full-text row.

The text of a row is kept as the tokens FTS5 would make of it (:func:`sqlite_words.tokens`:
runs of letters and digits, lowercased, without diacritics, as SQLite's tokenizer reads each
character), in order, each after a space and the last followed by one (revision 0016,
:func:`spelled`): ``Café au lait`` is `` cafe au lait ``. A phrase is then those tokens in a row,
found by ``LIKE`` (:func:`pattern`) as FTS5 finds it, whatever the database's locale.

Each row also carries its tokens as a ``tsvector`` of lexemes written here, not parsed by
PostgreSQL (revision 0015), and ``#<owner id>``, which no token can be. A GIN index lists the
rows holding a token, or any token a prefix begins, or a user's. A ``tsvector`` holds no lexeme
over 2,046 bytes and under 1 MB in all: a row whose spelled text is longer than
:data:`BODY_LIMIT` bytes (a dataset of many thousand files), or that holds a longer token, gets
:data:`MORE` instead of its tokens, and its words are matched in its text alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from dataflow_lite.store import search_sql, sqlite_words
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE

#: The lexeme of a row whose tokens are not listed (no token holds ``#``).
MORE = "#more"
#: The longest spelled text whose tokens are listed. Each distinct token costs its bytes and
#: four in the ``tsvector``, and one more byte than itself in the text: 200,000 bytes of text
#: stay well under the 1 MB a ``tsvector`` may hold.
BODY_LIMIT = 200_000
#: The longest lexeme PostgreSQL takes.
LEXEME_LIMIT = 2046


def owner_lexeme(owner_id: int | str) -> str:
    """The lexeme every row of ``owner_id``'s datasets holds."""
    return f"#{owner_id}"


def _lexeme(token: str) -> str:
    # No token holds a quote or a backslash (FTS5 parts tokens at each), so none is escaped.
    return f"'{token}'"


def quoted(lexemes: Sequence[str]) -> str:
    """``lexemes`` as ``tsvector`` text."""
    return " ".join(_lexeme(lexeme) for lexeme in lexemes)


def spelled(tokens: Sequence[str], first: bool = True) -> str:
    """A row's text as PostgreSQL keeps it: each token after a space, the last followed by one
    (``first=False``: without the first space, to follow a row's text)."""
    return (" " if first else "") + "".join(token + " " for token in tokens)


def pattern(words: str, prefix: bool) -> str | None:
    """A ``LIKE`` pattern finding ``words``' tokens in a row, in a row; a bare word (``prefix``)
    may be the beginning of its last token. None when they have no token.

    No token holds a space, ``%``, ``_`` or ``\\`` (FTS5 parts tokens at each).
    """
    found = sqlite_words.tokens(words)
    if not found:
        return None
    return "% " + " ".join(found) + ("%" if prefix else " %")


def listed(tokens: Sequence[str]) -> list[str] | None:
    """The distinct ``tokens`` of a row, or None when they cannot all be listed."""
    if len(spelled(tokens).encode()) > BODY_LIMIT:
        return None
    found = set(tokens)
    if any(len(token.encode()) > LEXEME_LIMIT for token in found):
        return None
    return sorted(found)


def lexemes(tokens: Sequence[str], owner_id: int | str) -> list[str]:
    """The lexemes of the ``tsvector`` of a full-text row of ``tokens``."""
    found = listed(tokens)
    return [*(found if found is not None else [MORE]), owner_lexeme(owner_id)]


def vector(tokens: Sequence[str], owner_id: int | str) -> str:
    """The ``tsvector`` (as text) of a full-text row of ``tokens``."""
    return quoted(lexemes(tokens, owner_id))


def row_matches(row: Sequence[Any], body: str, creator_id: int) -> bool:
    """Whether a stored full-text row (its :data:`TEXT_COLUMNS`) holds what :func:`text_row`
    makes of ``body``, its tokens in any order (a file added later appends its names)."""
    held, owner, held_lexemes = row
    found = sqlite_words.tokens(body)
    return (
        search_sql.same_row(owner, [token for token in held.split(" ") if token], found, creator_id)
        # PostgreSQL writes a tsvector out as its quoted lexemes (none holds a quote).
        and sorted(re.findall(r"'([^']*)'", held_lexemes)) == sorted(lexemes(found, creator_id))
    )


def phrase(words: str, prefix: bool) -> tuple[str, int] | None:
    """``words`` as a ``tsquery`` (as text) that every listed row holding them matches, and
    how many tokens they have (more than one: the row's text must be checked for them in a
    row). None when they have no token; an empty query when no listed row can hold them (a
    token longer than any listed).
    """
    found = sqlite_words.tokens(words)
    if not found:
        return None
    if any(len(token.encode()) > LEXEME_LIMIT for token in found):
        return "", len(found)
    lexemes = [_lexeme(token) for token in found]
    if prefix:
        lexemes[-1] += ":*"
    return "(" + " & ".join(lexemes) + ")", len(found)


#: The columns of a full-text row after its ``rowid``, as :func:`text_row` gives them.
TEXT_COLUMNS = ("body", "owner", "tokens")


def text_row(body: str, creator_id: int) -> tuple[str, str, str]:
    """A dataset's full-text row: its text spelled (0016), its owner (0012), its tokens (0015)."""
    found = sqlite_words.tokens(body)
    return spelled(found), search_sql.owner_text(creator_id), vector(found, creator_id)


def append_text(session: Session, dataset_id: int, names: str) -> bool:
    """Append ``names``' tokens to a dataset's full-text row and to its tokens; False when it
    has none. The row's tokens stay listed while :func:`listed` would list them all."""
    added_tokens = sqlite_words.tokens(names)
    names = spelled(added_tokens, first=False)
    found = listed(added_tokens)
    added = session.execute(
        text(
            f"UPDATE {SEARCH_TABLE} SET body = body || :names, tokens = CASE "
            "WHEN :listed AND octet_length(body) + :length <= :limit "
            "AND NOT tokens @@ CAST(:unlisted AS tsquery) THEN tokens || CAST(:tokens AS tsvector) "
            # The row's own owner lexeme (owner_lexeme) beside MORE.
            "ELSE array_to_tsvector(ARRAY[:more, '#' || owner]) END WHERE rowid = :id"
        ),
        {
            "id": dataset_id,
            "names": names,
            "listed": found is not None,
            "length": len(names.encode()),
            "limit": BODY_LIMIT,
            "more": MORE,
            "unlisted": quoted([MORE]),
            "tokens": quoted(found or []),
        },
    )
    return bool(getattr(added, "rowcount", 0))
