"""Checking one dataset's full-text row against words, as FTS5 would, but for one row.

FTS5 answers "which rows hold these words" quickly, but "does row N hold them" costs a read of
every matching row's entry (a prefix query merges them all: 30 ms to 190 ms a row at a million
datasets). Walking datasets newest first and checking each needs the second, so this module
reads the row's text (a lookup by rowid) and matches it in Python with the tokens the
``unicode61 remove_diacritics 2`` tokenizer makes (:func:`tokens`); a bare word matches a token
it begins, a phrase its tokens in a row. :func:`register` adds the function to a connection.

Which characters make tokens, and what each becomes in one, is asked of SQLite's own tokenizer,
once per character a process meets (:func:`_read`): its tables follow an older Unicode than
Python's and fold as Python does not (``µ`` is ``μ``, ``°`` parts tokens, ``x̅`` is two), so
rules written here would answer other datasets. PostgreSQL's tokens (:mod:`pg_words`) are these.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from functools import lru_cache

from dataflow_lite.store.migrations.baseline import TOKENIZER

FUNCTION = "dataflow_words"
_ASCII_TOKEN = re.compile(r"[a-z0-9]+")


_asker: tuple[int, sqlite3.Connection] | None = None
_asking = threading.Lock()


def _ask(text: str) -> list[str]:
    """The tokens SQLite's tokenizer makes of ``text``, from a table in this process's memory
    (a connection is never shared with a forked child: the import checks lines in several)."""
    global _asker
    with _asking:
        if _asker is None or _asker[0] != os.getpid():
            connection = sqlite3.connect(":memory:", check_same_thread=False)
            connection.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize = '{TOKENIZER}')")
            connection.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
            _asker = (os.getpid(), connection)
        connection = _asker[1]
        connection.execute("DELETE FROM t")
        connection.execute("INSERT INTO t (rowid, x) VALUES (1, ?)", (text,))
        return [row[0] for row in connection.execute("SELECT term FROM v ORDER BY offset")]


@lru_cache(maxsize=1 << 16)
def _read(char: str) -> str | None:
    """What ``char`` is in a token: None when it parts tokens; ``""`` when it is dropped (a
    diacritic: it neither begins a token nor parts one); else the one character it becomes."""
    if "\ud800" <= char <= "\udfff":
        return None  # a lone surrogate cannot be stored, nor given to SQLite
    found = _ask(f"a{char}b")
    return found[0][1:-1] if len(found) == 1 else None


def tokens(text: str) -> list[str]:
    """The tokens FTS5's unicode61 tokenizer (remove_diacritics 2) makes of ``text``."""
    if text.isascii():  # the common case, at regular-expression speed: ASCII tokens are [a-z0-9]+
        return _ASCII_TOKEN.findall(text.lower())
    found: list[str] = []
    current: list[str] = []
    for char in text:
        read = _read(char)
        if read:
            current.append(read)
        elif read is None and current:
            found.append("".join(current))
            current = []
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
