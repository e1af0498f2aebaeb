"""Checking one dataset's full-text row against words, as FTS5 would, but for one row.

FTS5 answers "which rows hold these words" quickly, but "does row N hold them" costs a read of
every matching row's entry (a prefix query merges them all: 30 ms to 190 ms a row at a million
datasets). Walking datasets newest first and checking each needs the second, so this module
reads the row's text (a lookup by rowid) and matches it in Python with the tokens the
``unicode61 remove_diacritics 2`` tokenizer makes (:func:`tokens`); a bare word matches a token
it begins, a phrase its tokens in a row. :func:`register` adds the function to a connection.

Which characters make tokens, and what each becomes in one, is asked of SQLite's own tokenizer,
256 characters at a time, once per process (:func:`_block`): its tables follow an older
Unicode than Python's and fold as Python does not (``µ`` is ``μ``, an overline parts ``x̅y``),
so rules written here would answer other datasets. PostgreSQL's tokens (:mod:`pg_words`) are
these. Python's ``sqlite3`` must have FTS5 (SQLite 3.27 or later), as SQLite's catalog does.
"""

from __future__ import annotations

import json
import re
import sqlite3
from functools import lru_cache

from dataflow_lite.store.migrations.baseline import TOKENIZER

FUNCTION = "dataflow_words"
_ASCII_TOKEN = re.compile(r"[a-z0-9]+")


#: What each character of a block of 256 is in a token (:func:`_block`); no character is
#: read as these two, which FTS5 counts as separators.
_PARTS, _DROPPED = "\x00", "\x01"
_blocks: dict[int, str] = {}


def _block(number: int) -> str:
    """What each character from ``number * 256`` on is in a token: :data:`_PARTS` when it
    parts tokens; :data:`_DROPPED` when it is dropped (a diacritic: it neither begins a token
    nor parts one); else the one character it becomes. Each is read by the tokenizer in
    ``a{char}b``, from a table in memory of its own (1.5 ms a block; two threads reading one
    block at once read the same), so nothing is shared with another thread or a forked child.
    All 4,352 blocks hold 4 MB.
    """
    first = number * 256
    if 0xD800 <= first < 0xE000:  # lone surrogates: neither stored nor given to SQLite
        return _blocks.setdefault(number, _PARTS * 256)
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize = '{TOKENIZER}')")
        connection.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
        connection.executemany(
            "INSERT INTO t (rowid, x) VALUES (?, ?)",
            [(code, f"a{chr(code)}b") for code in range(first, first + 256)],
        )
        terms: dict[int, list[str]] = {}
        for code, term in connection.execute("SELECT doc, term FROM v"):
            terms.setdefault(code, []).append(term)
    finally:
        connection.close()
    read = [
        (found[0][1:-1] or _DROPPED) if len(found := terms.get(code, [])) == 1 else _PARTS
        for code in range(first, first + 256)
    ]
    return _blocks.setdefault(number, "".join(read))


def tokens(text: str) -> list[str]:
    """The tokens FTS5's unicode61 tokenizer (remove_diacritics 2) makes of ``text``."""
    if text.isascii():  # the common case, at regular-expression speed: ASCII tokens are [a-z0-9]+
        return _ASCII_TOKEN.findall(text.lower())
    found: list[str] = []
    current: list[str] = []
    for char in text:
        code = ord(char)
        read = (_blocks.get(code >> 8) or _block(code >> 8))[code & 255]
        if read == _PARTS:
            if current:
                found.append("".join(current))
                current = []
        elif read != _DROPPED:
            current.append(read)
    if current:
        found.append("".join(current))
    return found


def _holds(body: list[str], phrase: list[str], prefix: bool) -> bool:
    if not phrase:
        return False
    *head, last = phrase
    width = len(phrase)
    for start in range(len(body) - width + 1):
        if body[start : start + width - 1] == head:
            token = body[start + width - 1]
            if token == last or (prefix and token.startswith(last)):
                return True
    return False


def _ascii_pattern(phrase: list[str], prefix: bool) -> re.Pattern[str] | None:
    """A pattern finding ``phrase`` in a lowercased ASCII row as :func:`_holds` would.

    An ASCII row's tokens are the maximal runs of ``[a-z0-9]``, so a token begins where no such
    character precedes it, tokens in a row are parted by other characters, and a whole last
    token ends where none follows. None for an empty phrase (it never holds).
    """
    if not phrase:
        return None
    body = "[^a-z0-9]+".join(re.escape(token) for token in phrase)
    return re.compile(f"(?<![a-z0-9]){body}" + ("" if prefix else "(?![a-z0-9])"))


Phrases = list[tuple[list[str], bool]]


@lru_cache(maxsize=256)
def _spec(
    spec: str,
) -> tuple[Phrases, Phrases, list[re.Pattern[str] | None], list[re.Pattern[str] | None]]:
    loaded = json.loads(spec)
    positive = [(tokens(words), prefix) for words, prefix in loaded["all"]]
    negative = [(tokens(words), prefix) for words, prefix in loaded["none"]]
    # A row is checked once per dataset walked: the regular expressions answer an ASCII row
    # without splitting it into tokens (ten times faster than the token loop).
    return (
        positive,
        negative,
        [_ascii_pattern(*phrase) for phrase in positive],
        [_ascii_pattern(*phrase) for phrase in negative],
    )


def spec(positive: list[tuple[str, bool]], negative: list[tuple[str, bool]]) -> str:
    """The second argument of the SQL function: words every row must hold, and must not."""
    return json.dumps({"all": positive, "none": negative})


def matches(body: str | None, spec_text: str) -> bool:
    """Whether a full-text row holds every positive phrase of ``spec_text`` and no negative."""
    positive, negative, positive_ascii, negative_ascii = _spec(spec_text)
    if body is None:
        return not positive
    if body.isascii():
        lowered = body.lower()
        return all(p is not None and p.search(lowered) for p in positive_ascii) and not any(
            p is not None and p.search(lowered) for p in negative_ascii
        )
    words = tokens(body)
    return all(_holds(words, *phrase) for phrase in positive) and not any(
        _holds(words, *phrase) for phrase in negative
    )


def register(connection: sqlite3.Connection) -> None:
    """Make ``dataflow_words(body, spec)`` callable in SQL on ``connection``."""
    connection.create_function(FUNCTION, 2, matches, deterministic=True)
