"""What each catalog lists per owner answers as the rest of search does: PostgreSQL's tokens
(revision 0015) and spelled text (0016) say what FTS5 says, for words and phrases with
accents, for rows too long to list their tokens and after names are appended; each value names
its dataset's owner however it was written (SQLite 0014, PostgreSQL 0015); a long text value is
stored and found."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from dataflow_lite.store import metadata, pg_words, search, search_sql
from dataflow_lite.store.models import Dataset, DatasetFile, MetadataValue

from .bare_catalog import bare_catalog

LONG = "漢" * 700  # one token of 2,100 bytes
NAMES = {1: "Café au lait", 2: "Ärger im Büro", 3: "cafeteria run", 4: "plain run"}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    engine = bare_catalog(tmp_path_factory, request, "search-lists")
    yield engine
    engine.dispose()


def _add(session: Session, ident: int, name: str, owner: int = 1) -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=ident)
    session.add(Dataset(id=ident, name=name, creator_id=owner, endpoint_id="e",
                        folder=f"f{ident}", created_at=moment))  # fmt: skip
    session.flush()
    search.reindex(session, ident)


def _found(session: Session, q: str, owner: int | None = 1) -> list[int]:
    return sorted(
        dataset.id for dataset in search.search_datasets(session, owner, q, 1, 50).results
    )


@pytest.mark.parametrize("window", [50, 1], ids=["listed", "walked"])
def test_words_are_folded_as_fts5_folds_them(engine, monkeypatch, window):
    """Whether a word's datasets are read from its list or walked and checked one by one
    (SQLite's row check, :mod:`sqlite_words`), it finds the datasets FTS5 finds."""
    monkeypatch.setattr(search_sql, "WINDOW", window)
    with Session(engine) as session:
        for ident, name in {**NAMES, 5: "bead 5 µm", 6: "bead 5 μm at x\u0305y"}.items():
            _add(session, ident, name)
        assert _found(session, "μm") == [5, 6]  # the micro sign is mu to FTS5
        assert _found(session, '"5 µm"') == [5, 6]
        assert _found(session, '"x y"') == [6]  # FTS5 parts tokens at an overline
        assert _found(session, "cafe") == [1, 3]
        assert _found(session, "café") == [1, 3]
        assert _found(session, '"cafe"') == [1]
        assert _found(session, '"CAFÉ AU"') == [1]  # a phrase folds as a word does
        assert _found(session, '"cafe au lai"') == []
        assert _found(session, '"ARGER im Büro" -"au lait"') == [2]
        assert _found(session, "ARGER buro") == [2]
        assert _found(session, "run -cafe") == [4]
        assert _found(session, "-bead -run") == [1, 2]
        assert _found(session, "cafe", owner=2) == []


def test_a_row_too_long_to_list_is_matched_in_its_text(engine, monkeypatch):
    """Rows past the limit (names appended past it, or written so) answer as the others do;
    on PostgreSQL they keep no token but the mark and their owner's."""
    monkeypatch.setattr(pg_words, "BODY_LIMIT", 40)
    with Session(engine) as session:
        _add(session, 1, "alpha beta")
        _add(session, 2, "alpha " + "gamma " * 10)  # written too long
        _add(session, 3, "alpha beta", owner=2)
        _add(session, 4, LONG)  # a token longer than any lexeme
        _add(session, 5, "Crème Brûlée " + "x " * 20)  # too long, with diacritics
        for ident in (1, 3):
            session.add(DatasetFile(dataset_id=ident, name="delta.tif"))
            search.add_names(session, ident, ["delta.tif"])
        assert _found(session, "delta") == [1]
        for ident in (1, 3):  # appended past the limit
            session.add(DatasetFile(dataset_id=ident, name="epsilon_" * 4 + ".tif"))
            search.add_names(session, ident, ["epsilon_" * 4 + ".tif"])
        if engine.dialect.name == "postgresql":
            rows = dict(session.execute(text("SELECT rowid, tokens::text FROM dataset_text")).all())
            assert rows[1] == "'#1' '#more'" and rows[2] == "'#1' '#more'"
            assert rows[3] == "'#2' '#more'"
        assert _found(session, "alpha") == [1, 2]
        assert _found(session, "alpha", owner=None) == [1, 2, 3]
        assert _found(session, "gam") == [2]
        assert _found(session, "alpha -gamma") == [1]
        assert _found(session, '"alpha beta" delta epsilon') == [1]
        assert _found(session, '-"beta delta"') == [2, 4, 5]
        assert _found(session, '"creme brulee x" CRÈME') == [5]
        assert _found(session, '"brulee xx"') == []
        assert _found(session, "zeta") == []
        assert _found(session, LONG) == [4]
        assert _found(session, LONG + "x") == []


def test_a_token_too_long_for_a_lexeme_leaves_the_row_unlisted():
    assert pg_words.listed(["b", "a", "b"]) == ["a", "b"]
    assert pg_words.listed([LONG]) is None
    assert pg_words.vector([LONG[:10]], 7) == "'" + LONG[:10] + "' '#7'"
    assert pg_words.text_row("Crème  brûlée!", 7)[0] == " creme brulee "


def test_each_value_names_its_datasets_owner_however_it_is_written(engine):
    """A raw INSERT without the owner or with another's, a value moved to another dataset, a
    dataset given to another user: the value is listed under its dataset's owner."""
    with Session(engine) as session:
        _add(session, 1, "one")
        _add(session, 2, "two", owner=2)
        session.commit()
    with engine.begin() as db:
        db.execute(text("INSERT INTO metadatavalue (dataset_id, field_name, value) "
                        "VALUES (1, 'Depth', '7'), (2, 'Width', '8')"))  # fmt: skip
        db.execute(
            text(
                "INSERT INTO metadatavalue (dataset_id, field_name, value, owner_id) "
                "VALUES (1, 'Tip', '\"sharp\"', 2), (2, 'Tip', '\"sharp\"', 1)"
            )
        )
        db.execute(text("UPDATE metadatavalue SET dataset_id = 2 WHERE value = '7'"))
    with Session(engine) as session:
        assert _found(session, "Depth>5", owner=1) == []
        assert _found(session, "Depth>5", owner=2) == [2]
        assert _found(session, "Width:8", owner=2) == [2]
        assert _found(session, "Tip:SHARP", owner=1) == [1]
        assert _found(session, "Tip:sharp", owner=None) == [1, 2]
    with engine.begin() as db:
        db.execute(text("UPDATE dataset SET creator_id = 2 WHERE id = 1"))
        owners = set(db.execute(text("SELECT dataset_id, owner_id FROM metadatavalue")).all())
    assert owners == {(1, 2), (2, 2)}
    with Session(engine) as session:
        assert _found(session, "Tip:sharp", owner=1) == []
        assert _found(session, "Tip:sharp", owner=2) == [1, 2]


def test_a_long_text_value_is_stored_and_found_whole(engine):
    """PostgreSQL indexes a text's first characters: a value too long for a whole index entry
    (3,000 bytes, not compressible) is stored, and an equal value is told from one that shares
    those characters."""
    draw = random.Random(15)
    long = "".join(chr(draw.randrange(0x4E00, 0x9FFF)) for _ in range(1000))
    twin = long[:-1] + "x"
    with Session(engine) as session:
        _add(session, 1, "one")
        _add(session, 2, "two")
        session.add(MetadataValue(dataset_id=1, field_name="Note", value=long, owner_id=1))
        session.add(MetadataValue(dataset_id=2, field_name="Note", value=twin, owner_id=1))
        session.commit()
        assert _found(session, f'Note:"{long}"') == [1]
        assert _found(session, f'Note:"{twin}"', owner=None) == [2]
        assert _found(session, f'Note:"{long[:200]}"') == []


def test_the_longest_integer_is_stored_and_found_and_a_longer_one_refused(engine):
    """A number's entry in PostgreSQL's typed index holds its value and its JSON text: an
    integer of 1,000 digits fits, a longer one is refused before it is stored."""
    with Session(engine) as session:
        _add(session, 1, "one")
        session.add(MetadataValue(dataset_id=1, field_name="Big", value=10**999 + 7, owner_id=1))
        session.commit()
        assert _found(session, "Big>5") == [1]
    with pytest.raises(metadata.InvalidMetadata, match="Big: is a number of more than 1000 digits"):
        metadata.validate([("Big", -(10**1000))], [])
