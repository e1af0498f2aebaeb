"""Search against a brute-force filter: hypothesis makes small catalogs and queries, and every
page the store answers must be the one a plain Python filter over the same rows gives.

Both ways of answering are exercised: a small window makes the newest-first walk answer (the
terms list more datasets than the window), the real one the sorted short list. Searches read as
the server's do, never holding the write lock, so SQLite keeps the tokens of the words searched
(``sqlite_prefixes``); each catalog is searched once half written, and the rows written after
must add their tokens to those kept.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from dataflow_lite.store import (
    pg_pages,
    pg_words,
    search,
    search_sql,
    sqlite_lists,
    sqlite_pages,
    sqlite_prefixes,
    sqlite_search,
)
from dataflow_lite.store import query as grammar
from dataflow_lite.store.db import reading
from dataflow_lite.store.models import Dataset, DatasetFile, MetadataValue

from .bare_catalog import bare_catalog

WORDS = ["alpha", "alps", "alpine", "beta", "gamma", "run"]
DAYS = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 2, 10)]
FILES = ["AFM_topo.png", "notes.txt", "raw_01.tif", "a.b"]
INSTRUMENTS = {1: "Cypher", 2: "Bruker"}
TEXTS = ["hot", "Cold", "5", "2024-01-02T08:00:00Z", "2024-02-10", "soon"]
KEYS = ["Temp", "Day", "Tip"]
#: Every row's tokens listed on PostgreSQL (with 40 bytes, some rows' are not).
LISTED = pg_words.BODY_LIMIT


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """A catalog on each backend: the same pages must come from SQLite and from PostgreSQL."""
    engine = bare_catalog(tmp_path_factory, request, "search-property")
    with engine.begin() as connection:
        for ident, name in INSTRUMENTS.items():
            connection.execute(
                text("INSERT INTO instrument (id, name, description) VALUES (:id, :name, '')"),
                {"id": ident, "name": name},
            )
    yield engine
    engine.dispose()


values = st.one_of(
    st.integers(0, 5), st.sampled_from([2.5, 5.0]), st.sampled_from(TEXTS), st.booleans()
)
datasets = st.lists(
    st.fixed_dictionaries({
        "owner": st.sampled_from([1, 2]),
        "name": st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join),
        "day": st.sampled_from(DAYS),
        "second": st.integers(0, 86399),
        "instrument": st.sampled_from([None, 1, 2]),
        "values": st.dictionaries(st.sampled_from(KEYS), values, max_size=3),
        "files": st.lists(st.sampled_from(FILES), max_size=2, unique=True),
    }),
    max_size=12,
)  # fmt: skip
numbers = st.sampled_from(["0", "2", "2.5", "5"])
days = st.sampled_from([d.isoformat() for d in DAYS] + ["2024-01-03"])
comparable = st.one_of(numbers, days)
# Comparisons are the terms with most edges (equal ends, numbers against dates): drawn often.
comparisons = st.builds(lambda k, op, v: f"{k}{op}{v}", st.sampled_from(["Temp", "Day"]),
                        st.sampled_from([">", ">=", "<", "<="]), comparable)  # fmt: skip
term = st.one_of(
    st.sampled_from(WORDS + ["al", "alp", "gam", "ru"]),
    st.sampled_from(['"alpha beta"', '"beta alpha"', '"run"']),
    st.builds(lambda k, v: f"{k}:{v}", st.sampled_from(KEYS),
              st.one_of(comparable, st.sampled_from(["hot", "COLD", "true", "false", "soon"]))),
    comparisons,
    comparisons,
    comparisons,
    st.builds(lambda k, a, b: f"{k}:{min(a, b)}..{max(a, b)}", st.sampled_from(KEYS),
              st.integers(-2, 6), st.integers(-2, 6)),
    st.builds(lambda k, a, b: f"{k}:{min(a, b)}..{max(a, b)}", st.sampled_from(KEYS), days, days),
    st.builds(lambda k: f"{k}:*", st.sampled_from(KEYS)),
    st.builds(lambda d: f"created:{d}", days),
    st.builds(lambda d: f"created:{d}..", days),
    st.builds(lambda d: f"created:..{d}", days),
    days,
    st.sampled_from(["instrument:Cypher", "instrument:bruker", "instrument:0", "instrument:2"]),
    st.sampled_from(["file:topo", "file:TXT", "file:t", "file:_0", "file:a.b", "file:xyz"]),
)  # fmt: skip
queries = st.lists(
    st.tuples(st.booleans(), term).map(lambda pair: ("-" if pair[0] else "") + pair[1]),
    max_size=3,
).map(" ".join)


def _tokens(text_: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text_.lower())


def _number(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw) else None
    except ValueError:
        return None


def _in_days(value: object, low: date | None, high: date | None) -> bool:
    if not isinstance(value, str) or not re.match(r"\d{4}-\d{2}-\d{2}", value):
        return False
    shown = value.lower()
    above = low is None or shown >= low.isoformat()
    below = high is None or shown < (high + timedelta(days=1)).isoformat()
    return above and below


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _value_matches(value: object, op: str, raw: str) -> bool:
    """One metadata value against ``key<op>raw``, as the language defines it."""
    if op == ":":
        if raw == "*":
            return True
        if ".." in raw:
            low_raw, high_raw = raw.split("..")
            if _day(low_raw) or _day(high_raw):
                return _in_days(value, _day(low_raw), _day(high_raw))
            low, high = _number(low_raw), _number(high_raw)
            return _is_number(value) and (low is None or value >= low) and (
                high is None or value <= high)  # type: ignore[operator]  # fmt: skip
        if isinstance(value, str) and value.lower() == raw.lower():
            return True
        if (when := _day(raw)) is not None:
            return _in_days(value, when, when)
        if (wanted := _number(raw)) is not None:
            return _is_number(value) and value == wanted
        return isinstance(value, bool) and raw.lower() == str(value).lower()
    if (when := _day(raw)) is not None:
        bounds = {">": (when + timedelta(days=1), None), ">=": (when, None),
                  "<": (None, when - timedelta(days=1)), "<=": (None, when)}[op]  # fmt: skip
        return _in_days(value, *bounds)
    wanted = _number(raw)
    if not _is_number(value) or wanted is None:
        return False
    return {">": value > wanted, ">=": value >= wanted, "<": value < wanted,
            "<=": value <= wanted}[op]  # type: ignore[operator]  # fmt: skip


def _matches(row: dict, term_: str) -> bool:
    negated = term_.startswith("-")
    term_ = term_[1:] if negated else term_
    return _plain_matches(row, term_) != negated


def _plain_matches(row: dict, term_: str) -> bool:
    body = _tokens(row["body"])
    if term_.startswith('"'):
        phrase = _tokens(term_)
        return any(body[i : i + len(phrase)] == phrase for i in range(len(body)))
    if (when := _day(term_)) is not None:
        return row["day"] == when
    found = re.fullmatch(r"([A-Za-z]+)(>=|<=|:|>|<)(.*)", term_)
    if found is None:
        return any(token.startswith(term_.lower()) for token in body)
    key, op, raw = found.groups()
    if key == "created":
        if ".." in raw:
            low, high = (_day(end) for end in raw.split(".."))
            return (low is None or row["day"] >= low) and (high is None or row["day"] <= high)
        return row["day"] == _day(raw)
    if key == "instrument":
        names = {str(k): k for k in INSTRUMENTS} | {v.lower(): k for k, v in INSTRUMENTS.items()}
        return row["instrument"] == (None if raw == "0" else names[raw.lower()])
    if key == "file":
        return any(raw.lower() in name.lower() for name in row["files"])
    return key in row["values"] and _value_matches(row["values"][key], op, raw)


def _load(
    engine, rows: list[dict], searched_halfway: str | None = None, in_order: bool = False
) -> None:
    """Write ``rows`` as the catalog's only datasets; ``searched_halfway`` is searched once half
    of them are written, so that SQLite keeps its words' tokens (``sqlite_prefixes``) and the
    rows written after must add theirs. ``in_order``: numbered in the order of their times, so
    that SQLite reads a word's pages from its list in id order (revision 0018) from the first,
    where otherwise it does from the first dataset after the last one older than another."""
    if in_order:
        rows.sort(key=lambda row: (row["day"], row["second"]))
    with Session(engine) as session:
        for statement in ("datasetfile", "metadatavalue", "dataset_text", "dataset"):
            session.execute(text(f"DELETE FROM {statement}"))
        if engine.dialect.name == "sqlite":
            sqlite_prefixes.forget(session)  # as every writer of many rows does
            # As in a new catalog, where no dataset was ever written.
            session.execute(text("UPDATE dataset_order SET ordered_from = 0, newest_at = '', "
                                 "last_id = 0"))  # fmt: skip
        for number, row in enumerate(rows, start=1):
            if searched_halfway is not None and number == len(rows) // 2 + 1:
                session.commit()
                with Session(reading(engine)) as reader:
                    search.search_datasets(reader, None, searched_halfway, 1, 1)
            moment = datetime.combine(row["day"], datetime.min.time(), UTC)
            moment += timedelta(seconds=row["second"])
            session.add(Dataset(id=number, name=row["name"], creator_id=row["owner"],
                                instrument_id=row["instrument"], endpoint_id="e",
                                folder=f"f{number}", created_at=moment))  # fmt: skip
            session.flush()
            for key, value in row["values"].items():
                session.add(MetadataValue(dataset_id=number, field_name=key, value=value))
            for name in row["files"]:
                session.add(DatasetFile(dataset_id=number, name=name))
            session.flush()
            search.reindex(session, number)
            words = [row["name"]]
            for key, value in row["values"].items():
                words += [key, str(value)]
            row["body"] = "\n".join([*words, *row["files"]])
            row["id"], row["moment"] = number, moment
        session.commit()


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(  # an end equal to a value, which a strict comparison would miss
    rows=[{"owner": 1, "name": "run", "day": DAYS[0], "second": 0, "instrument": None,
           "values": {"Temp": 2, "Day": "2024-01-02T08:00:00Z"}, "files": []}],
    q="Temp>=2 Day<=2024-01-02", owner=1, window=10_000, per_page=3, deep=False, listed=LISTED,
    in_order=False,
)  # fmt: skip
@example(  # one term, the owner's own list of it longer than the window: walked, not listed
    rows=[{"owner": owner, "name": "run", "day": DAYS[0], "second": second, "instrument": None,
           "values": {"Temp": 2}, "files": []} for owner, second in [(1, 0), (2, 1), (1, 2),
                                                                     (1, 3), (2, 4), (1, 5)]],
    q="run", owner=1, window=2, per_page=1, deep=False, listed=40, in_order=False,
)  # fmt: skip
@example(  # one term, its owner's list short and everyone's long: counted in the owner's alone
    rows=[{"owner": owner, "name": "run", "day": DAYS[0], "second": second, "instrument": None,
           "values": {}, "files": []} for owner, second in [(2, 0), (1, 1), (2, 2), (2, 3)]],
    q="run", owner=1, window=2, per_page=1, deep=False, listed=LISTED, in_order=True,
)  # fmt: skip
@example(  # the same, of a value
    rows=[{"owner": owner, "name": "run", "day": DAYS[0], "second": second, "instrument": None,
           "values": {"Temp": 2}, "files": []} for owner, second in [(1, 0), (2, 1), (1, 2),
                                                                     (1, 3), (2, 4), (1, 5)]],
    q="Temp>=2", owner=1, window=2, per_page=3, deep=True, listed=LISTED, in_order=False,
)  # fmt: skip
@example(  # a file name most datasets have, alone: counted along the walk
    rows=[{"owner": 1, "name": "run", "day": DAYS[0], "second": second, "instrument": None,
           "values": {}, "files": ["AFM_topo.png"] if second % 3 else []} for second in range(7)],
    q="file:topo", owner=None, window=10_000, per_page=2, deep=False, listed=LISTED,
    in_order=False,
)  # fmt: skip
@example(  # the first walked have it, then none, then more past the walk's cap: the list read
    rows=[{"owner": 1, "name": "run", "day": DAYS[0], "second": second, "instrument": None,
           "values": {}, "files": ["AFM_topo.png"] if second in (0, 1, 9, 10, 11) else []}
          for second in range(12)],
    q="file:topo", owner=1, window=2, per_page=2, deep=False, listed=40, in_order=False,
)  # fmt: skip
@given(
    rows=datasets,
    q=queries,
    owner=st.sampled_from([1, None]),
    window=st.sampled_from([2, 10_000]),
    per_page=st.sampled_from([1, 3, 50]),
    deep=st.booleans(),
    listed=st.sampled_from([LISTED, 40]),
    in_order=st.booleans(),
)
def test_every_page_is_the_brute_force_answer(engine, monkeypatch, rows, q, owner, window,
                                               per_page, deep, listed, in_order):  # fmt: skip
    # PostgreSQL lists the tokens of rows up to a length (longer ones are matched in their
    # text): with 40 bytes, some rows are listed and some are not.
    monkeypatch.setattr(pg_words, "BODY_LIMIT", listed)
    _load(engine, rows, searched_halfway=q, in_order=in_order)
    monkeypatch.setattr(search_sql, "WINDOW", window)
    # PostgreSQL reads a word's list along its table when a twentieth of the first 4 rows hold
    # it (so: when one does), and judges long lists by their first 2 datasets.
    monkeypatch.setattr(pg_pages, "SAMPLE", 4)
    monkeypatch.setattr(pg_pages, "PROBE", 2)
    # As a deep page by number would: SQLite's walk looks words up in their list, from the
    # walk's newest datasets as many as the page's depth (then four times as many, and so on).
    monkeypatch.setattr(sqlite_pages, "DEEP_OFFSET", 0 if deep else 1000)
    monkeypatch.setattr(sqlite_lists, "DEEP_TAKEN", 1)
    # A file name term alone is counted along the walk when half the first walked have it.
    monkeypatch.setattr(sqlite_pages, "FIRST_PROBE", 4)
    monkeypatch.setattr(sqlite_pages, "FIRST_LENGTH", 1)
    terms = re.findall(r'-?"[^"]*"|\S+', q)
    expected = [
        row for row in rows
        if (owner is None or row["owner"] == owner) and all(_matches(row, t) for t in terms)
    ]  # fmt: skip
    expected.sort(key=lambda row: (row["moment"], row["id"]), reverse=True)
    with Session(reading(engine)) as session:
        page = search.search_datasets(session, owner, q, 1, per_page)
        shown = [dataset.id for dataset in page.results]
        assert shown == [row["id"] for row in expected[:per_page]], (
            q,
            json.dumps(rows, default=str),
        )
        assert page.total == min(len(expected), window)
        assert page.total_exact == (len(expected) <= window)
        assert page.has_more == (len(expected) > per_page)
        following = [row["id"] for row in expected[per_page : 2 * per_page]]
        if page.next:  # the cursor's page is the next slice
            after = search.search_datasets(session, owner, q, 1, per_page, page.next)
            assert [d.id for d in after.results] == following
        if 2 * per_page <= window:  # and so is the second page by number
            second = search.search_datasets(session, owner, q, 2, per_page)
            assert [d.id for d in second.results] == following, q


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(st.fixed_dictionaries({
        "owner": st.sampled_from([1, 2]),
        "name": st.sampled_from(["run", "run alpha", "alps run", "beta", "alpha"]),
        "day": st.sampled_from(DAYS),
        "second": st.integers(0, 86399),
        "instrument": st.sampled_from([None, 1]),
        "values": st.dictionaries(st.sampled_from(["Temp"]), st.integers(0, 5), max_size=1),
        "files": st.just([]),
    }), min_size=30, max_size=60),
    q=st.sampled_from([
        "run", "al", '"alpha"', "run Temp>2", "al -beta", "run instrument:1",
        "run -instrument:1", "al created:2024-01-01..2024-01-02", "run -created:2024-01-01",
    ]),
    owner=st.sampled_from([1, None]),
    per_page=st.sampled_from([1, 2, 3]),
    page=st.integers(1, 3),
    in_order=st.booleans(),
)  # fmt: skip
def test_a_deep_page_by_number_is_the_brute_force_slice(engine, monkeypatch, rows, q, owner,
                                                        per_page, page, in_order):  # fmt: skip
    """Pages by number past the window's counting, along the walk with the words' list looked
    up from the newest datasets' smallest id on (ids in any order of creation), taking as few
    of them as the page's depth so that most pages take more before they are full; or, on
    SQLite, from the word's list in id order."""
    _load(engine, rows, in_order=in_order)
    monkeypatch.setattr(search_sql, "WINDOW", 9)
    monkeypatch.setattr(sqlite_pages, "DEEP_OFFSET", 0)
    monkeypatch.setattr(sqlite_lists, "DEEP_TAKEN", 1)
    terms = re.findall(r'-?"[^"]*"|\S+', q)
    expected = [
        row["id"] for row in sorted(rows, key=lambda row: (row["moment"], row["id"]), reverse=True)
        if (owner is None or row["owner"] == owner) and all(_matches(row, t) for t in terms)
    ]  # fmt: skip
    with Session(reading(engine)) as session:
        found = search.search_datasets(session, owner, q, page, per_page)
    start = (page - 1) * per_page
    assert [d.id for d in found.results] == expected[start : start + per_page], q
    assert found.has_more == (len(expected) > start + per_page)


def _bucket_key(value: object) -> object:
    """A facet value as both backends group it: booleans and numbers by number, dates by month."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}", value):
        return value[:7]
    return value


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(  # one term, whose list of the owner's own datasets is read alone: no other's counted
    rows=[{"owner": owner, "name": "run", "day": DAYS[owner], "second": 0, "instrument": owner,
           "values": {"Temp": owner}, "files": []} for owner in (2, 1, 2)],
    q="run", owner=1, window=10_000,
)  # fmt: skip
@example(  # the same, of a value
    rows=[{"owner": owner, "name": "run", "day": DAYS[owner], "second": 0, "instrument": owner,
           "values": {"Temp": owner}, "files": []} for owner in (2, 1, 2)],
    q="Temp>0", owner=1, window=10_000,
)  # fmt: skip
@given(
    rows=datasets,
    q=queries,
    owner=st.sampled_from([1, None]),
    window=st.sampled_from([2, 10_000]),
)
def test_facets_count_what_brute_force_counts(engine, monkeypatch, rows, q, owner, window):
    _load(engine, rows)
    monkeypatch.setattr(search_sql, "WINDOW", window)
    terms = re.findall(r'-?"[^"]*"|\S+', q)
    matching = [
        row for row in rows
        if (owner is None or row["owner"] == owner) and all(_matches(row, t) for t in terms)
    ]  # fmt: skip
    expected: dict[str, Counter[object]] = {"instrument": Counter(), "created": Counter()}
    for row in matching:
        expected["instrument"][row["instrument"] or 0] += 1
        expected["created"][row["moment"].strftime("%Y-%m")] += 1
        for key in KEYS:
            if key in row["values"]:
                expected.setdefault(key, Counter())[_bucket_key(row["values"][key])] += 1
    with Session(reading(engine)) as session:
        found = search.facet_datasets(session, owner, q, ["instrument", "created", *KEYS], 50)
    assert (found.total, found.total_exact) == (min(len(matching), window), len(matching) <= window)
    for field, buckets in found.facets.items():
        counted = Counter(
            {(b["id"] if field == "instrument" else _bucket_key(b["value"])): b["count"]
             for b in buckets}
        )  # fmt: skip
        if found.total_exact:
            assert counted == expected.get(field, Counter()), (field, q, rows)
        else:  # counted among `window` of the matches: never more than there are
            assert all(counted[key] <= expected[field][key] for key in counted), (field, q)
            assert sum(counted.values()) <= found.total


@pytest.fixture(scope="module", params=["sqlite"])
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """SQLite's catalog alone: how it checks one dataset's number is its own (sqlite_search)."""
    engine = bare_catalog(tmp_path_factory, request, "number-checks")
    yield engine
    engine.dispose()


#: Numbers that SQLite's CAST reads a bit apart from its JSON parser.
APART = [1802.442804701, 5.62e-32, 9223372036854776836]
any_values = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3), st.booleans(), st.none(), st.lists(st.integers(0, 9), max_size=2),
)  # fmt: skip
bounds = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(values=[1.0, -5, 2**64, "5", True, None, [3], 1e300], op=">=", low="-5", high="0",
         at=None)  # fmt: skip
@example(values=APART, op=":", low="0", high="0", at=0)
@example(values=APART, op="<=", low="0", high="0", at=1)
@example(values=APART, op=":", low="0", high="0", at=2)
@given(values=st.lists(any_values, min_size=1, max_size=6),
       op=st.sampled_from([">", ">=", "<", "<=", ":", ".."]), low=bounds, high=bounds,
       at=st.one_of(st.none(), st.integers(0, 5)))  # fmt: skip
def test_a_number_check_finds_what_the_number_index_lists(sqlite_engine, values, op, low, high, at):
    """A dataset's number is told apart from its stored text, and read as JSON; the typed index
    lists numbers as JSON reads them: both must find the same datasets, whatever the value, and
    a bound that is a stored number exactly (``at``: the value it is) too."""
    rows = [
        {"owner": 1, "name": "run", "day": DAYS[0], "second": second, "instrument": None,
         "values": {"Temp": value}, "files": []}
        for second, value in enumerate(values)
    ]  # fmt: skip
    _load(sqlite_engine, rows)
    if at is not None and at < len(values) and type(values[at]) in (int, float):
        low = json.dumps(values[at])
    ends = sorted([low, high], key=float)
    q = f"Temp:{ends[0]}..{ends[1]}" if op == ".." else f"Temp{op}{low}"
    (term,) = grammar.parse(q)
    sql = search_sql.Sql()
    cond = sqlite_search.value_cond(sql, term)
    assert cond.ids is not None and "IN ('integer', 'real')" not in cond.check
    with Session(sqlite_engine) as session:
        checked = {row[0] for row in sql.all(session, f"SELECT d.id FROM dataset AS d "
                                             f"WHERE {cond.check}")}  # fmt: skip
        listed = {row[0] for row in sql.all(session, f"SELECT id FROM ({cond.ids}) AS listed")}
    assert checked == listed, (q, values)
    if (values, q) == ([1.0, -5, 2**64, "5", True, None, [3], 1e300], "Temp>=-5"):
        assert checked == {1, 2, 3, 8}  # the numbers; not the text "5", true, null or a list
