"""The search language of ``q``: its grammar, its answers through the API, permissions, and a
property-based comparison with a brute-force filter over the same small catalog."""

from __future__ import annotations

import importlib
import io
import sqlite3
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from dataflow_lite.store import query
from dataflow_lite.store.query import Qualifier, QueryError, Text

from . import conftest


def create(client, auth, name, values=(), instrument_id=0):
    body = {
        "name": name,
        "instrument_id": instrument_id,
        "metadata_field_values_attributes": [
            {"field_name": key, "field_value": value} for key, value in values
        ],
    }
    response = client.post("/api/v1/datasets", json=body, headers=auth)
    assert response.status_code == 201, response.json
    return response.json["id"]


def upload(client, auth, dataset_id, name, folder=""):
    sent = client.post("/api/v1/dataset-file-upload", headers=auth, data={
        "dataset_id": str(dataset_id), "relative_path": folder, "file": (io.BytesIO(b"x"), name),
    })  # fmt: skip
    assert sent.status_code == 201, sent.json


def found(client, auth, q, **args):
    response = client.get("/api/v1/datasets/search", query_string={"q": q, **args}, headers=auth)
    assert response.status_code == 200, response.json
    return response.json


def ids(client, auth, q):
    return sorted(d["id"] for d in found(client, auth, q, per_page=100)["results"])


# --- the grammar -----------------------------------------------------------------------------


def test_every_form_parses_to_its_term():
    terms = query.parse(
        'afm "Asylum Research" -pzt -"bad tip" Microscope-Vendor:"Asylum Research" Temp>300 '
        "Temp>=1.5 Temp<2e3 Temp<=-4 Temp:1..5 Temp:..5 Temp:1.. Sample:* Day:2024-01-02 "
        "Day>2024-01-01 created:2024-05-01 created:2024-05-01..2024-06-01 created:..2024-06-01 "
        'instrument:Cypher creator:ada file:topo 2024-07-08 "created":x -Mode:AC'
    )
    assert terms == [
        Text("afm", phrase=False),
        Text("Asylum Research", phrase=True),
        Text("pzt", phrase=False, negated=True),
        Text("bad tip", phrase=True, negated=True),
        Qualifier("Microscope-Vendor", "eq", value="Asylum Research", raw="Asylum Research"),
        Qualifier("Temp", "gt", value=300, raw="300"),
        Qualifier("Temp", "ge", value=1.5, raw="1.5"),
        Qualifier("Temp", "lt", value=2000.0, raw="2e3"),
        Qualifier("Temp", "le", value=-4, raw="-4"),
        Qualifier("Temp", "range", low=1, high=5, raw="1..5"),
        Qualifier("Temp", "range", low=None, high=5, raw="..5"),
        Qualifier("Temp", "range", low=1, high=None, raw="1.."),
        Qualifier("Sample", "has", raw="*"),
        Qualifier("Day", "eq", value=date(2024, 1, 2), raw="2024-01-02"),
        Qualifier("Day", "gt", value=date(2024, 1, 1), raw="2024-01-01"),
        Qualifier("created", "range", low=date(2024, 5, 1), high=date(2024, 5, 1), builtin=True,
                  raw="2024-05-01"),
        Qualifier("created", "range", low=date(2024, 5, 1), high=date(2024, 6, 1), builtin=True,
                  raw="2024-05-01..2024-06-01"),
        Qualifier("created", "range", low=None, high=date(2024, 6, 1), builtin=True,
                  raw="..2024-06-01"),
        Qualifier("instrument", "eq", value="Cypher", builtin=True, raw="Cypher"),
        Qualifier("creator", "eq", value="ada", builtin=True, raw="ada"),
        Qualifier("file", "eq", value="topo", builtin=True, raw="topo"),
        Qualifier("created", "range", low=date(2024, 7, 8), high=date(2024, 7, 8), builtin=True,
                  raw="2024-07-08"),
        Qualifier("created", "eq", value="x", raw="x"),  # a quoted key is metadata
        Qualifier("Mode", "eq", value="AC", negated=True, raw="AC"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("q", "term", "problem"),
    [
        # An unclosed quote runs to the end of the search.
        ('"open phrase', '"open phrase words', "never closed"),
        ('Vendor:"Asylum', '"Asylum words', "never closed"),
        ("Temp>", "Temp>", "needs a value"),
        ("Temp>hot", "Temp>hot", "neither a number nor a YYYY-MM-DD date"),
        ("Temp<=2024-13-01", "Temp<=2024-13-01", "neither a number"),
        ("Temp:5..1", "Temp:5..1", "first end is above"),
        ("Temp:1..2024-01-01", "Temp:1..2024-01-01", "both ends"),
        ("Temp:..", "Temp:..", "at least one end"),
        ("created:yesterday", "created:yesterday", "YYYY-MM-DD"),
        ("created:1..5", "created:1..5", "dates"),
        ("created>2024-01-01", "created>2024-01-01", "takes ':'"),
        (":value", ":value", "needs a key"),
        ('"a"b', '"a"b', "space after the closing quote"),
    ],
)
def test_a_malformed_term_is_named(q, term, problem):
    with pytest.raises(QueryError) as raised:
        query.parse(f"fine {q} words")
    assert raised.value.term == term
    assert problem in raised.value.problem
    assert query.SYNTAX in str(raised.value)


def test_control_characters_and_punctuation_are_no_terms():
    assert query.parse("a\x00b -- *** ") == [Text("a", False), Text("b", False)]
    assert query.parse("") == [] and query.parse("   ") == []


# --- through the API -------------------------------------------------------------------------


@pytest.fixture
def catalog(cli, client, auth):
    """Four datasets of one user with typed values and files; one of another user."""
    cypher = cli.json("instrument", "add", "Cypher")["id"]
    made = {
        "hot": create(client, auth, "hot run", [
            ("Microscope-Vendor", "Asylum Research"), ("Temp", 373), ("Scans", 2.5),
            ("Day", "2024-01-15T10:00:00Z"), ("Tip", True), ("Tags", ["afm", "pzt"]),
        ], instrument_id=cypher),
        "cold": create(client, auth, "cold run", [
            ("Microscope-Vendor", "Bruker"), ("Temp", 77), ("Day", "2024-02-01"),
            ("Sample", "S-1"),
        ], instrument_id=cypher),
        "text": create(client, auth, "odd values", [("Temp", "300"), ("Day", "soon")]),
        "bare": create(client, auth, "bare"),
    }  # fmt: skip
    upload(client, auth, made["hot"], "AFM_Topography.PNG")
    upload(client, auth, made["cold"], "notes.txt", folder="raw")
    other = {"Authorization": "Bearer " + cli.user_key("eve")}
    made["eve"] = create(client, other, "hot run", [("Temp", 400), ("Sample", "S-1")])
    upload(client, other, made["eve"], "AFM_eve.PNG")
    made["cypher"] = cypher
    made["other"] = other
    return made


def test_each_form_finds_its_datasets(client, auth, catalog):
    hot, cold, odd, bare = (catalog[k] for k in ("hot", "cold", "text", "bare"))
    cases = {
        "run": [hot, cold],
        '"hot run"': [hot],
        '"run hot"': [],
        "run -cold": [hot],
        "-run": [odd, bare],
        'Microscope-Vendor:"asylum research"': [hot],  # text without regard to case
        "Microscope-Vendor:Asylum": [],  # equality, not a word
        "Temp>100": [hot],  # numbers compare as numbers; the text "300" is no number
        "Temp>=77": [hot, cold],
        "Temp<77": [],
        "Temp<=77": [cold],
        "Temp:77": [cold],
        "Temp:300": [odd],  # equal to the text "300"
        "Temp:70..80": [cold],
        "Temp:..100": [cold],
        "Temp<9223372036854775808": [hot, cold],  # past SQLite's integers (SQLite: a float)
        "Temp:-99999999999999999999..77": [cold],
        "Temp:100..": [hot],
        "Scans:2.5": [hot],
        "Day:2024-01-15": [hot],  # a date is its day
        "Day>2024-01-15": [cold],
        "Day>=2024-01-15": [hot, cold],
        "Day<2024-02-01": [hot],
        "Day:2024-01-01..2024-01-31": [hot],
        "Tip:true": [hot],
        "Sample:*": [cold],
        "-Sample:*": [hot, odd, bare],
        "Nothing:*": [],
        "instrument:Cypher": [hot, cold],
        f"instrument:{catalog['cypher']}": [hot, cold],
        "instrument:0": [odd, bare],
        "-instrument:cypher": [odd, bare],
        "instrument:Absent": [],
        "file:topo": [hot],
        "file:TXT": [cold],
        "file:t": [hot, cold],  # shorter than a trigram: still a substring
        "-file:topo": [cold, odd, bare],
        "creator:suhas": [hot, cold, odd, bare],
        "creator:eve": [],  # a user's search never reaches another user's datasets
        "piezo": [],
        "pzt": [hot],  # words in a list value
        "run Temp>100 instrument:Cypher file:AFM": [hot],
    }
    for q, expected in cases.items():
        assert ids(client, auth, q) == sorted(expected), q


def test_a_null_value_is_found_by_key_null_and_its_facet(client, auth, catalog):
    noted = create(client, auth, "noted", [("Note", None), ("Temp", 5)])
    assert ids(client, auth, "Note:null") == [noted]
    assert ids(client, auth, "Note:*") == [noted]
    assert noted not in ids(client, auth, "-Note:null")
    facet = client.get("/api/v1/datasets/facets?fields=Note", headers=auth).json["facets"]
    [bucket] = facet["Note"]
    assert (bucket["value"], bucket["count"]) == (None, 1)
    assert ids(client, auth, bucket["q"]) == [noted]


@pytest.mark.sqlite
def test_a_null_stored_as_sql_null_by_an_earlier_release_is_found(client, auth, catalog,
                                                                   instance):  # fmt: skip
    with sqlite3.connect(instance / "dataflow.sqlite3") as db:
        db.execute(
            "INSERT INTO metadatavalue (dataset_id, field_name, value) VALUES (?, 'Note', NULL)",
            (catalog["bare"],),
        )
    assert ids(client, auth, "Note:null") == [catalog["bare"]]
    assert catalog["bare"] not in ids(client, auth, "-Note:null")


@pytest.mark.sqlite
def test_created_finds_by_day(client, auth, catalog, instance):
    with sqlite3.connect(instance / "dataflow.sqlite3") as db:
        db.execute("UPDATE dataset SET created_at = '2023-03-04 23:59:59.000000' WHERE id = ?",
                   (catalog["cold"],))  # fmt: skip
    cold, others = catalog["cold"], [catalog[k] for k in ("hot", "text", "bare")]
    assert ids(client, auth, "2023-03-04") == [cold]
    assert ids(client, auth, "created:2023-03-04") == [cold]
    assert ids(client, auth, "created:2023-03-05") == []
    assert ids(client, auth, "created:..2023-03-04") == [cold]
    assert ids(client, auth, "created:2023-03-05..") == sorted(others)
    assert ids(client, auth, "-2023-03-04") == sorted(others)
    assert ids(client, auth, '"2023-03-04"') == []  # quoted: words, not a date


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "q",
    [
        '"; DROP TABLE dataset; --',
        "' OR 1=1 --",
        'Temp:"x\' OR 1=1"',
        "name:*) OR (1",
        'run OR cold NEAR("a" "b") body:x ^hot col:* *',
        '"a "" b"',
        "Robert'); DELETE FROM metadatavalue;--",
        "\x00\x01hot",
        'file:"%_\\"',
    ],
)
def test_quotes_and_index_syntax_are_only_text(client, auth, catalog, instance, q):
    response = client.get("/api/v1/datasets/search", query_string={"q": q}, headers=auth)
    assert response.status_code in (200, 400), response.json
    if response.status_code == 400:
        assert response.json["errors"]["q"] and response.json["code"] == 400
    with sqlite3.connect(instance / "dataflow.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM dataset").fetchone()[0] == 5
        assert db.execute("SELECT count(*) FROM metadatavalue").fetchone()[0] == 14
    assert ids(client, auth, 'file:"%_\\"') == []
    assert ids(client, auth, "file:%") == []  # LIKE's wildcards are characters here


def test_integers_past_64_bits_are_found_on_either_catalog(client, auth):
    """PostgreSQL compares them exactly; SQLite as the floats its JSON functions read them."""
    huge = create(client, auth, "huge", [("Count", 99999999999999999999)])
    small = create(client, auth, "small", [("Count", 7)])
    assert ids(client, auth, "Count:99999999999999999999") == [huge]
    assert ids(client, auth, "Count>9223372036854775808") == [huge]
    assert ids(client, auth, "Count:0..9223372036854775808") == [small]


def test_a_malformed_search_is_a_400_naming_the_term(client, auth, catalog):
    response = client.get("/api/v1/datasets/search?q=run Temp>hot", headers=auth)
    assert response.status_code == 400
    body = response.json
    assert set(body) == {"code", "status", "message", "errors"}
    assert "'Temp>hot'" in body["message"] and "key>N" in body["message"]
    assert body["errors"]["q"] == [body["message"]]


def test_a_user_never_counts_another_users_datasets(client, auth, catalog, cli):
    other = catalog["other"]
    for q in ("hot run", "Temp:*", "Sample:S-1", "file:AFM", "", "run -cold", "Temp>0"):
        theirs = found(client, other, q)
        assert [d["id"] for d in theirs["results"]] == [catalog["eve"]], q
        assert theirs["total"] == 1, q
    assert found(client, other, "creator:suhas")["total"] == 0
    files = client.get("/api/v1/dataset-files/search?q=AFM", headers=other).json
    assert [f["name"] for f in files["results"]] == ["AFM_eve.PNG"] and files["total"] == 1
    admin = {"Authorization": "Bearer " + cli.user_key("boss", admin=True)}
    assert sorted(d["id"] for d in found(client, admin, "Sample:S-1")["results"]) == sorted(
        [catalog["cold"], catalog["eve"]]
    )
    assert [d["id"] for d in found(client, admin, "creator:eve")["results"]] == [catalog["eve"]]
    assert found(client, admin, "creator:eve -creator:eve")["total"] == 0
    assert found(client, admin, "-creator:eve")["total"] == 4


def test_file_search_by_substring(client, auth, catalog):
    def names(q, **args):
        response = client.get(
            "/api/v1/dataset-files/search", query_string={"q": q, **args}, headers=auth
        )
        assert response.status_code == 200, response.json
        return sorted(f["name"] for f in response.json["results"])

    assert names("topo") == ["AFM_Topography.PNG"]  # within the name, any case
    assert names("graphy.P") == ["AFM_Topography.PNG"]
    assert names("aw") == ["raw"]  # two characters: matched by scanning, same answer
    assert names("t") == ["AFM_Topography.PNG", "notes.txt"]
    assert names("%") == [] and names("_T") == ["AFM_Topography.PNG"]
    assert names("notes", dataset_id=catalog["cold"]) == ["notes.txt"]
    assert names("notes", dataset_id=catalog["hot"]) == []


def test_pages_continue_with_after_and_stop_at_the_window(client, auth, monkeypatch):
    from dataflow_lite.store import search_sql

    made = [create(client, auth, f"run {i}") for i in range(7)]
    monkeypatch.setattr(search_sql, "WINDOW", 5)
    first = found(client, auth, "run", per_page=3)
    assert (first["total"], first["total_exact"], first["has_more"]) == (5, False, True)
    assert [d["id"] for d in first["results"]] == made[::-1][:3]
    second = found(client, auth, "run", per_page=3, after=first["next"])
    assert [d["id"] for d in second["results"]] == made[::-1][3:6]
    third = found(client, auth, "run", per_page=3, after=second["next"])
    assert [d["id"] for d in third["results"]] == made[:1]
    assert (third["has_more"], third["next"]) == (False, None)
    deep = client.get("/api/v1/datasets/search?q=run&per_page=3&page=2", headers=auth)
    assert deep.status_code == 400 and deep.json["errors"] == {
        "page": ["page 2 at 3 a page lies past the first 5 results: continue from the previous "
                 "page's 'next' with ?after=..."]
    }  # fmt: skip
    bad = client.get("/api/v1/datasets/search?q=run&after=nonsense", headers=auth)
    assert bad.status_code == 400 and bad.json["errors"] == {
        "after": ["after 'nonsense' is not a cursor from a page's 'next'"]
    }
    monkeypatch.setattr(search_sql, "WINDOW", 10_000)
    exact = found(client, auth, "run", per_page=3, page=2)
    assert (exact["total"], exact["total_exact"]) == (7, True)
    assert [d["id"] for d in exact["results"]] == made[::-1][3:6]


@pytest.mark.sqlite
def test_typed_value_indexes_exist_and_answer_comparisons(client, auth, catalog, instance):
    # Since 0012 the search names them (INDEXED BY fails when an index cannot answer): the
    # covering (key, dataset, value) index would otherwise be the unANALYZEd planner's pick.
    with sqlite3.connect(instance / "dataflow.sqlite3") as db:
        # Since 0014 each owner's values are a range of their own.
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT dataset_id FROM metadatavalue INDEXED BY "
            "ix_metadatavalue_number WHERE field_name = 'Temp' AND owner_id = 1 "
            "AND json_type(value) IN ('integer', 'real') AND json_extract(value, '$') > 5"
        ).fetchall()
        assert "ix_metadatavalue_number (field_name=? AND owner_id=? AND <expr>>?)" in str(plan)
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT dataset_id FROM metadatavalue INDEXED BY "
            "ix_metadatavalue_text WHERE field_name = 'T' AND owner_id = 1 "
            "AND json_type(value) = 'text' AND lower(json_extract(value, '$')) = 'x'"
        ).fetchall()
        assert "ix_metadatavalue_text (field_name=? AND owner_id=? AND <expr>=?)" in str(plan)
        # Since 0010 both end with the dataset id: a term's list needs no row of the table.
        for name in ("ix_metadatavalue_number", "ix_metadatavalue_text"):
            columns = db.execute(f"PRAGMA index_info({name})").fetchall()
            assert [column[2] for column in columns][-1] == "dataset_id"


@pytest.mark.sqlite
def test_values_written_without_their_owner_are_found_by_it(client, auth, catalog, instance):
    """A user's typed terms read that user's range of the value indexes (0014): a value that a
    raw INSERT wrote without its owner, or with another's, or before its dataset, or moved to
    another user's dataset, or whose dataset was given to another user, is given its dataset's
    owner, so that owner's search finds it, and no one else's."""
    bare, cold, eve = catalog["bare"], catalog["cold"], catalog["eve"]
    with sqlite3.connect(instance / "dataflow.sqlite3") as db:
        creator = dict(db.execute("SELECT id, creator_id FROM dataset"))
        db.execute("INSERT INTO metadatavalue (dataset_id, field_name, value) "
                   "VALUES (?, 'Depth', '7')", (bare,))  # fmt: skip
        db.execute("INSERT INTO metadatavalue (dataset_id, field_name, value, owner_id) "
                   "VALUES (?, 'Depth', '\"deep\"', ?)", (cold, creator[eve]))  # fmt: skip
        db.execute("UPDATE metadatavalue SET dataset_id = ? WHERE dataset_id = ? "
                   "AND field_name = 'Sample'", (bare, eve))  # fmt: skip
        late = max(creator) + 1
        db.execute("INSERT INTO metadatavalue (dataset_id, field_name, value, owner_id) "
                   "VALUES (?, 'Depth', '9', NULL)", (late,))  # fmt: skip
        db.execute(
            "INSERT INTO dataset (id, name, creator_id, instrument_id, endpoint_id, folder, "
            "created_at) SELECT ?, 'late', creator_id, NULL, endpoint_id, 'late', created_at "
            "FROM dataset WHERE id = ?", (late, bare)
        )  # fmt: skip
        owners = db.execute("SELECT dataset_id, owner_id FROM metadatavalue").fetchall()
    assert creator[bare] != creator[eve]
    assert all(owner == creator.get(dataset, creator[bare]) for dataset, owner in owners)
    assert ids(client, auth, "Depth>5") == [bare, late]
    assert ids(client, auth, "Depth:deep") == [cold]
    assert ids(client, auth, "Sample:S-1") == sorted([cold, bare])
    assert ids(client, catalog["other"], "Sample:S-1") == []
    with sqlite3.connect(instance / "dataflow.sqlite3") as db:
        db.execute("UPDATE dataset SET creator_id = ? WHERE id = ?", (creator[eve], cold))
    assert ids(client, auth, "Depth:deep") == []
    assert ids(client, catalog["other"], "Depth:deep") == [cold]


def test_facets_count_the_matching_datasets_and_narrow_the_search(client, auth, catalog):
    response = client.get(
        "/api/v1/datasets/facets?q=run&fields=Microscope-Vendor,instrument,created,Day,Temp,Tip",
        headers=auth,
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["total"], body["total_exact"]) == (2, True)
    facets = body["facets"]
    assert sorted((b["value"], b["count"]) for b in facets["Microscope-Vendor"]) == [
        ("Asylum Research", 1), ("Bruker", 1)]  # fmt: skip
    assert [(b["value"], b["count"], b["id"]) for b in facets["instrument"]] == [
        ("Cypher", 2, catalog["cypher"])]  # fmt: skip
    assert sum(b["count"] for b in facets["created"]) == 2
    assert sorted(b["value"] for b in facets["Day"]) == ["2024-01", "2024-02"]  # by month
    assert sorted(b["value"] for b in facets["Temp"]) == [77, 373]
    assert [b["value"] for b in facets["Tip"]] == [True]
    # Each bucket's q narrows the search to exactly its datasets.
    for field, buckets in facets.items():
        for bucket in buckets:
            narrowed = found(client, auth, f"run {bucket['q']}")
            assert narrowed["total"] == bucket["count"], (field, bucket)
    everyone = client.get("/api/v1/datasets/facets?fields=Temp", headers=auth).json
    # Never eve's 400: the user's own datasets only.
    assert {(b["value"], b["count"]) for b in everyone["facets"]["Temp"]} == {
        ("300", 1), (77, 1), (373, 1)}  # fmt: skip
    bad = client.get("/api/v1/datasets/facets?q=Temp>x&fields=Temp", headers=auth)
    assert bad.status_code == 400 and bad.json["errors"]["q"]
    none = client.get("/api/v1/datasets/facets?fields=,", headers=auth)
    assert none.status_code == 400 and none.json["errors"]["fields"]


def test_metadata_keys_count_only_the_users_datasets(client, auth, catalog, cli):
    response = client.get("/api/v1/metadata-keys", headers=auth)
    assert response.status_code == 200, response.json
    keys = {row["key"]: (row["datasets"], row["types"]) for row in response.json}
    assert keys["Temp"] == (3, ["integer", "text"])
    assert keys["Scans"] == (1, ["real"]) and keys["Tags"] == (1, ["array"])
    assert keys["Tip"] == (1, ["true"]) and keys["Sample"] == (1, ["text"])
    theirs = client.get("/api/v1/metadata-keys", headers=catalog["other"]).json
    assert {row["key"]: row["datasets"] for row in theirs} == {"Temp": 1, "Sample": 1}
    admin = {"Authorization": "Bearer " + cli.user_key("root", admin=True)}
    everyone = {row["key"]: row["datasets"] for row in client.get(
        "/api/v1/metadata-keys", headers=admin).json}  # fmt: skip
    assert everyone["Temp"] == 4 and everyone["Sample"] == 2


def test_key_counts_follow_statements_of_many_rows(client, auth, catalog, instance: Path):
    """Statements that write many values at once (a bulk load, a rename, a removal of several
    datasets) count every row, as statements of one value do."""
    hot, cold, odd, bare, eve = (catalog[k] for k in ("hot", "cold", "text", "bare", "eve"))
    rows = {"hot": hot, "cold": cold, "odd": odd, "bare": bare, "eve": eve}
    with conftest.catalog(instance) as session:
        run = session.execute
        run(
            sa.text(
                "INSERT INTO metadatavalue (dataset_id, field_name, value) VALUES "
                "(:bare, 'New', '1'), (:odd, 'New', '2'), "
                "(:bare, 'Other', '\"x\"'), (:eve, 'New', '3.5')"
            ),
            rows,
        )
    with conftest.catalog(instance) as session:
        run = session.execute
        run(
            sa.text(
                "UPDATE metadatavalue SET value = '\"warm\"' WHERE field_name = 'Temp' "
                "AND dataset_id IN (:hot, :cold)"
            ),
            rows,
        )  # integers become text
        run(sa.text("UPDATE metadatavalue SET field_name = 'Renamed' WHERE field_name = 'Day'"))
        run(sa.text("UPDATE metadatavalue SET metadata_field_id = NULL"))  # no count changes
        run(
            sa.text(
                "UPDATE metadatavalue SET dataset_id = :eve WHERE dataset_id = :bare "
                "AND field_name = 'New'"
            ),
            rows,
        )  # from one creator to another
        run(sa.text("DELETE FROM metadatavalue WHERE field_name IN ('Microscope-Vendor', 'Other')"))
    with conftest.catalog(instance) as session:
        for table in ("transfer", "datasetfile"):
            session.execute(sa.text(f"DELETE FROM {table} WHERE dataset_id IN (:cold, :eve)"),
                            rows)  # fmt: skip
        session.execute(sa.text("DELETE FROM dataset_text WHERE rowid IN (:cold, :eve)"), rows)
        session.execute(sa.text("DELETE FROM dataset WHERE id IN (:cold, :eve)"), rows)
    keys = {row["key"]: (row["datasets"], row["types"]) for row in client.get(
        "/api/v1/metadata-keys", headers=auth).json}  # fmt: skip
    assert keys == {
        "Temp": (2, ["text"]), "Renamed": (2, ["text"]), "New": (1, ["integer"]),
        "Scans": (1, ["real"]), "Tip": (1, ["true"]), "Tags": (1, ["array"]),
    }  # fmt: skip
    assert client.get("/api/v1/metadata-keys", headers=catalog["other"]).json == []
    # And no row is left over that the answers above do not show (a count of zero, say).
    with conftest.catalog(instance) as session:
        sqlite = session.get_bind().dialect.name == "sqlite"
        kind = importlib.import_module(
            "dataflow_lite.store.migrations.versions."
            + ("0006_search_indexes" if sqlite else "0007_postgresql_search")
        ).KIND.format(v="m.value")
        counted = session.execute(sa.text(
            f"SELECT d.creator_id, m.field_name, {kind}, count(*) FROM metadatavalue AS m "
            "JOIN dataset AS d ON d.id = m.dataset_id GROUP BY 1, 2, 3")).all()  # fmt: skip
        kept = session.execute(sa.text("SELECT * FROM metadatakey")).all()
    assert sorted(map(tuple, kept)) == sorted(map(tuple, counted))


@pytest.mark.sqlite
def test_key_counts_and_file_names_follow_plain_inserts_and_deletes(client, auth, catalog,
                                                                     instance):  # fmt: skip
    """What a bulk importer writes with plain INSERTs (and a removal) keeps both right."""
    with sqlite3.connect(instance / "dataflow.sqlite3") as db:
        db.execute("PRAGMA foreign_keys = ON")
        db.execute(
            "INSERT INTO metadatavalue (dataset_id, field_name, value) VALUES (?, 'New', '1')",
            (catalog["bare"],),
        )
        db.execute(
            "INSERT INTO datasetfile (dataset_id, name, relative_path, is_directory, created_at) "
            "VALUES (?, 'imported_scan.h5', '', 0, '2024-01-01 00:00:00.000000')",
            (catalog["bare"],),
        )
        db.execute("DELETE FROM dataset_text WHERE rowid = ?", (catalog["cold"],))
        db.execute("DELETE FROM datasetfile WHERE dataset_id = ?", (catalog["cold"],))
        db.execute("DELETE FROM transfer WHERE dataset_id = ?", (catalog["cold"],))
        db.execute("DELETE FROM dataset WHERE id = ?", (catalog["cold"],))
    keys = {row["key"]: row["datasets"] for row in client.get(
        "/api/v1/metadata-keys", headers=auth).json}  # fmt: skip
    assert keys["New"] == 1 and keys["Temp"] == 2 and "Sample" not in keys
    assert ids(client, auth, "file:scan.h") == [catalog["bare"]]
    files = client.get("/api/v1/dataset-files/search?q=notes", headers=auth).json
    assert files["total"] == 0
