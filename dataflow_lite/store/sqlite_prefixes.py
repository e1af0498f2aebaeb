"""The whole tokens each bare word searched begins, kept so that FTS5 seeks them (SQLite).

A bare word matches every token it begins (``op3`` matches ``op3`` and ``op30``). FTS5 answers
such a prefix query by merging the whole lists of all those tokens before it reads an entry:
7-11 ms for ``"op3"*`` at a million datasets, where the whole token ``"op3"``, read lazily and
from a rowid on, takes 0.3-0.5 ms. So the tokens a searched word begins are kept in
:data:`TABLE` (revision 0017), and the word is asked as those tokens OR'ed together
(:func:`sqlite_search.fts_words`).

At every commit, what is kept for a word holds every token a full-text row holds that begins
it (and maybe tokens no row holds any more, which match nothing):

- a word's first search lists its tokens from FTS5's vocabulary holding the write lock, so that
  no row is written meanwhile (:func:`searched`). That search still asks the prefix; if another
  writer holds the lock (or SQLite fails), it waits for no one and a later search lists them.
  At most :data:`MAX_KEPT` words are kept: past that, every kept word is forgotten first;
- each writer of full-text rows adds their tokens to the kept words they begin, in its own
  transaction (:func:`note`), or, writing many rows (the import, a rebuild of the index),
  forgets every kept word (:func:`forget`).

A word shorter than :data:`SHORTEST` or longer than :data:`LONGEST` is asked as a prefix, and so
is one that begins more than :data:`MANY` tokens, a token longer than :data:`LONGEST_TOKEN`, or
a token FTS5 cut inside a character (kept as NULL). A migration that writes full-text rows must
forget every kept word too.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from contextlib import closing
from itertools import takewhile

from sqlalchemy import Connection, bindparam, text
from sqlmodel import Session

from dataflow_lite.store import sqlite_words
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE

TABLE = "dataset_text_prefix"
#: The words whose tokens are kept: shorter ones begin too many, longer ones are rare.
SHORTEST, LONGEST = 3, 64
#: A word that begins more tokens than this, or a token longer than this, is asked as a prefix.
MANY, LONGEST_TOKEN = 16, 1_000
#: Rows written at once past which the writer forgets every kept word rather than note them.
NOTED_ROWS = 100
#: FTS5's vocabulary of the full-text table, one row per token: a table of the connection's own.
_VOCABULARY = "dataset_text_tokens"
#: At most this many words are kept: a search that would keep more forgets them all first.
MAX_KEPT = 10_000
#: Words per statement that looks kept words up (SQLite allows 32,766 parameters since 3.32),
#: and how many a writer looks up before it reads every kept word instead.
_PER_STATEMENT, _LOOKED_UP = 500, 2_000

log = logging.getLogger(__name__)
_KEPT = text(f"SELECT prefix, tokens FROM {TABLE} WHERE prefix IN :words").bindparams(
    bindparam("words", expanding=True)
)


def searched(session: Session, words: Iterable[str]) -> dict[str, list[str] | None]:
    """The tokens kept for each of ``words`` (each one token, as FTS5 makes it) that has them
    (None: asked as a prefix); the first search of the others lists theirs, for the searches
    after it."""
    wanted = sorted({word for word in words if SHORTEST <= len(word) <= LONGEST})
    if not wanted:
        return {}
    kept = {
        prefix: None if tokens is None else json.loads(tokens)
        for prefix, tokens in session.execute(_KEPT, {"words": wanted})
    }
    if missing := [word for word in wanted if word not in kept]:
        database = session.get_bind().engine.url.database
        assert database is not None  # a catalog is a file
        _list(database, missing)
    return kept


def _list(database: str, words: Sequence[str]) -> None:
    """Keep the tokens each of ``words`` begins, listed holding the write lock. Nothing is kept
    when another writer holds it (this waits for no one) or SQLite fails (a full disk): keeping
    only spares later searches work, and this search asks the prefix either way. A connection
    of its own, not one of the engine's: with every pooled connection held by a search, one
    waiting for another would wait for ever."""
    try:
        with closing(sqlite3.connect(database, timeout=0, isolation_level=None)) as connection:
            _list_holding_the_lock(connection, words)
    except sqlite3.Error as error:
        # (an error of the sqlite3 module itself has no code; an extended code keeps the
        # primary one in its low byte)
        if getattr(error, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY:
            log.warning("the tokens of %s were not kept: %s", list(words), error)


def _list_holding_the_lock(connection: sqlite3.Connection, words: Sequence[str]) -> None:
    connection.execute(
        f"CREATE VIRTUAL TABLE temp.{_VOCABULARY} USING fts5vocab(main, {SEARCH_TABLE}, 'row')"
    )
    connection.execute("BEGIN IMMEDIATE")
    try:
        listed = {
            prefix
            for (prefix,) in connection.execute(
                f"SELECT prefix FROM {TABLE} WHERE prefix IN ({', '.join('?' * len(words))})",
                words,
            )
        }  # by a search that took the lock first
        new = [word for word in words if word not in listed]
        (count,) = connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        if count + len(new) > MAX_KEPT:
            connection.execute(f"DELETE FROM {TABLE}")
        connection.executemany(
            f"INSERT INTO {TABLE} (prefix, tokens) VALUES (?, ?)",
            [(word, _tokens(connection, word)) for word in new],
        )
        connection.execute("COMMIT")
    finally:
        if connection.in_transaction:  # (a failed COMMIT has rolled back already)
            connection.execute("ROLLBACK")


def _tokens(connection: sqlite3.Connection, word: str) -> str | None:
    """The tokens the full-text table holds that begin ``word``, as JSON (None: too many, or
    one FTS5 cut inside a character, as it cuts a token at 32,768 bytes)."""
    # FTS5 orders tokens by their UTF-8 bytes, as Python orders strings by code point: every
    # token beginning ``word`` lies from it to the word whose last character comes next.
    after = _next_character(word[-1])
    rows = connection.execute(
        f"SELECT CAST(term AS BLOB) FROM temp.{_VOCABULARY} WHERE term >= ?"
        + (" AND term < ?" if after else "")
        + f" LIMIT {MANY + 1}",
        (word, word[:-1] + after) if after else (word,),
    ).fetchall()
    try:
        terms = [term.decode() for (term,) in rows]
    except UnicodeDecodeError:
        return None
    return _listed([t for t in terms if t.startswith(word)], len(rows))


def _listed(tokens: list[str], found: int) -> str | None:
    """What is kept for a word: its tokens as JSON, or None when it begins more than MANY
    (``found``) or a token so long that asking for it would cost more than the prefix."""
    if found > MANY or any(len(token) > LONGEST_TOKEN for token in tokens):
        return None
    return json.dumps(tokens)


def _next_character(char: str) -> str | None:
    """The character after ``char`` that SQLite can hold (no lone surrogate); None after the
    last."""
    code = ord(char) + 1
    if 0xD800 <= code <= 0xDFFF:
        code = 0xE000
    return chr(code) if code <= 0x10FFFF else None


def note(db: Session | Connection, bodies: Sequence[str]) -> None:
    """Add the tokens of ``bodies``, the text just written to full-text rows, to the kept words
    they begin; past :data:`NOTED_ROWS` rows, forget every kept word instead."""
    if len(bodies) > NOTED_ROWS:
        forget(db)
        return
    tokens = sorted({token for body in bodies for token in sqlite_words.tokens(body)})
    prefixes = sorted(
        {token[:end] for token in tokens for end in range(SHORTEST, min(len(token), LONGEST) + 1)}
    )
    if len(prefixes) <= _LOOKED_UP:
        kept = [
            row
            for start in range(0, len(prefixes), _PER_STATEMENT)
            for row in db.execute(_KEPT, {"words": prefixes[start : start + _PER_STATEMENT]})
        ]
    else:  # a long text (a dataset's 10,000 file names): every kept word, read once
        kept = list(db.execute(text(f"SELECT prefix, tokens FROM {TABLE}")))
    for prefix, listed in kept:
        if listed is None:
            continue  # asked as a prefix whatever is added
        known = json.loads(listed)
        added = [token for token in _begun(tokens, prefix, MANY + 1) if token not in known]
        if added:
            grown = known + added
            db.execute(
                text(f"UPDATE {TABLE} SET tokens = :tokens WHERE prefix = :prefix"),
                {"prefix": prefix, "tokens": _listed(grown, len(grown))},
            )


def _begun(tokens: list[str], prefix: str, most: int) -> list[str]:
    """The first ``most`` of the sorted ``tokens`` that begin ``prefix``."""
    start = bisect_left(tokens, prefix)
    return list(takewhile(lambda token: token.startswith(prefix), tokens[start : start + most]))


def forget(db: Session | Connection) -> None:
    """Forget every kept word (the next search of each lists its tokens again)."""
    db.execute(text(f"DELETE FROM {TABLE}"))
