"""SQLite keeps the tokens each bare word searched begins (``sqlite_prefixes``): a word's second
search asks FTS5 for those tokens, and finds what its first found, whichever writer wrote a row
since."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest
from click.testing import CliRunner

from dataflow_lite.cli import main
from dataflow_lite.store import sqlite_prefixes, sqlite_search

from .test_search import create, found, ids, upload

pytestmark = pytest.mark.sqlite


def kept(instance) -> dict[str, list[str] | None]:
    with closing(sqlite3.connect(instance / "dataflow.sqlite3")) as db:
        rows = db.execute("SELECT prefix, tokens FROM dataset_text_prefix").fetchall()
    return {prefix: None if tokens is None else json.loads(tokens) for prefix, tokens in rows}


@pytest.fixture
def asked(monkeypatch) -> list[str]:
    """What each bare word was asked of FTS5 as, in the order asked."""
    said: list[str] = []
    fts_words = sqlite_search.fts_words

    def spied(*args, **kwargs):
        said.append(fts_words(*args, **kwargs))
        return said[-1]

    monkeypatch.setattr(sqlite_search, "fts_words", spied)
    return said


def test_a_words_second_search_asks_for_the_tokens_it_begins(client, auth, instance, asked):
    first, second = create(client, auth, "scan op3"), create(client, auth, "scan OP30")
    create(client, auth, "scan op4")
    assert ids(client, auth, "op3") == [first, second]
    assert set(asked) == {'"op3"*', '"op3"'}  # as a prefix (and as a whole token, to count)
    assert kept(instance) == {"op3": ["op3", "op30"]}
    asked.clear()
    assert ids(client, auth, "op3") == [first, second]
    assert set(asked) == {'("op3" OR "op30")', '"op3"'}
    asked.clear()
    others = sorted(set(ids(client, auth, "scan")) - {first, second})
    asked.clear()
    assert ids(client, auth, "scan -op3") == others
    assert '("op3" OR "op30")' in asked


@pytest.mark.parametrize("looked_up", [sqlite_prefixes._LOOKED_UP, 0])  # 0: every kept word read
def test_rows_written_after_a_word_is_kept_are_found(
    client, auth, instance, asked, monkeypatch, looked_up
):
    monkeypatch.setattr(sqlite_prefixes, "_LOOKED_UP", looked_up)
    alpha = create(client, auth, "run alpha")
    other = create(client, auth, "run other")
    assert ids(client, auth, "alp") == [alpha]
    assert kept(instance)["alp"] == ["alpha"]
    alpine = create(client, auth, "run", values=[("Site", "Alpine")])  # a dataset's whole row
    upload(client, auth, other, "alpaca.txt")  # a file's name appended to a row
    assert kept(instance)["alp"] == ["alpha", "alpine", "alpaca"]
    asked.clear()
    assert ids(client, auth, "alp") == sorted([alpha, alpine, other])
    assert '("alpha" OR "alpine" OR "alpaca")' in asked
    assert ids(client, auth, "run -alp") == []


def test_a_word_beginning_many_tokens_is_asked_as_a_prefix(client, auth, instance, asked):
    made = [create(client, auth, f"many{n}") for n in range(sqlite_prefixes.MANY + 1)]
    assert ids(client, auth, "man") == made
    assert kept(instance) == {"man": None}
    asked.clear()
    create(client, auth, "manx")  # nothing to add to: still too many
    assert kept(instance) == {"man": None}
    assert len(ids(client, auth, "man")) == len(made) + 1
    assert set(asked) == {'"man"*', '"man"'}


def test_short_and_long_words_phrases_and_exclusions_alone_are_not_kept(client, auth, instance):
    create(client, auth, f"ab {'x' * 65} S-16 alpha")
    for q in ("ab", "x" * 65, "S-16", '"alpha"'):
        assert len(ids(client, auth, q)) == 1, q
    assert ids(client, auth, "-alpha") == []  # checked row by row: FTS5 is not asked
    assert kept(instance) == {}


def test_writers_of_many_rows_forget_every_kept_word(cli, client, auth, instance, tmp_path):
    create(client, auth, "scan op3")
    ids(client, auth, "op3")
    assert kept(instance) == {"op3": ["op3"]}
    line = {
        "name": "op31 run", "creator": "suhas", "created_at": "2021-03-04T05:06:07Z",
        "metadata": {}, "files": [],
    }  # fmt: skip
    lines = [dict(line, name=f"op3{n} run") for n in range(sqlite_prefixes.NOTED_ROWS + 1)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(item) + "\n" for item in lines))
    cli("import", str(tmp_path / "in.jsonl"))
    assert kept(instance) == {}
    assert found(client, auth, "op3")["total"] == 1 + len(lines)
    assert list(kept(instance)) == ["op3"]
    done = CliRunner().invoke(main, ["--instance", str(instance), "db", "rebuild-search"])
    assert done.exit_code == 0, done.output
    assert kept(instance) == {}


def test_a_search_meeting_the_write_lock_waits_for_no_one_and_keeps_nothing(client, auth, instance):
    made = create(client, auth, "scan op3")
    with closing(sqlite3.connect(instance / "dataflow.sqlite3", isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        assert ids(client, auth, "op3") == [made]
        writer.execute("ROLLBACK")
    assert kept(instance) == {}
    assert ids(client, auth, "op3") == [made]
    assert kept(instance) == {"op3": ["op3"]}


def test_a_token_fts5_cut_inside_a_character_is_asked_as_a_prefix(client, auth, instance):
    # FTS5 keeps a token's first 32,768 bytes: here the cut falls inside a two-byte character.
    made = create(client, auth, "run", values=[("Notes", "datum" + "\u0436" * 20_000)])
    for _ in range(2):
        assert ids(client, auth, "datu") == [made]
    assert kept(instance) == {"datu": None}


@pytest.mark.parametrize(
    ("failing", "said"),
    [
        ("SELECT * FROM nowhere", "no such table: nowhere"),  # as a full disk or damaged index
        ("SELECT ?", "Incorrect number of bindings"),  # the sqlite3 module's own: no error code
    ],
)
def test_a_failure_to_keep_a_words_tokens_is_logged_and_the_search_answers(
    client, auth, instance, monkeypatch, caplog, failing, said
):
    made = create(client, auth, "scan op3")
    monkeypatch.setattr(
        sqlite_prefixes, "_tokens", lambda connection, word: connection.execute(failing, ())
    )
    for _ in range(2):
        assert ids(client, auth, "op3") == [made]
    assert kept(instance) == {}
    assert f"the tokens of ['op3'] were not kept: {said}" in caplog.text


def test_a_word_beginning_a_very_long_token_is_asked_as_a_prefix(client, auth, instance):
    short = create(client, auth, "datum")
    assert ids(client, auth, "datu") == [short]
    assert kept(instance) == {"datu": ["datum"]}
    long = create(client, auth, "run", values=[("Notes", "datum" + "x" * 2_000)])  # noted
    assert kept(instance) == {"datu": None}
    assert ids(client, auth, "datu") == [short, long]
    done = CliRunner().invoke(main, ["--instance", str(instance), "db", "rebuild-search"])
    assert done.exit_code == 0, done.output
    assert ids(client, auth, "datu") == [short, long]  # listed from FTS5's vocabulary
    assert kept(instance) == {"datu": None}


def test_no_more_than_max_kept_words_are_kept(client, auth, instance, monkeypatch):
    monkeypatch.setattr(sqlite_prefixes, "MAX_KEPT", 2)
    made = create(client, auth, "alpha beta gamma")
    for word in ("alpha", "beta"):
        assert ids(client, auth, word) == [made]
    assert set(kept(instance)) == {"alpha", "beta"}
    assert ids(client, auth, "gamma") == [made]
    assert set(kept(instance)) == {"gamma"}


@pytest.mark.parametrize(
    ("char", "after"),
    [("a", "b"), ("\ud7ff", "\ue000"), ("\uffff", "\U00010000"), ("\U0010ffff", None)],
)
def test_the_range_of_tokens_a_word_begins_skips_surrogates_and_ends_at_the_last(char, after):
    assert sqlite_prefixes._next_character(char) == after
