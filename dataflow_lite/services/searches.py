"""Finding datasets and files: searches in the language of ``q``, facets and metadata keys."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import BigInteger, func, literal
from sqlalchemy.exc import OperationalError
from sqlmodel import col, select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit
from dataflow_lite.services.datasets import describe_all, visible_dataset
from dataflow_lite.services.errors import Conflict, Invalid, invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.services.progress import NoProgress, Progress
from dataflow_lite.store import search
from dataflow_lite.store.db import compact, unit_of_work
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE
from dataflow_lite.store.models import Dataset

T = TypeVar("T")

#: Datasets whose full-text rows one transaction of :func:`rebuild_search` compares.
REBUILD_IDS = 10_000
#: The range of ids a full-text row may have (SQLite's rowids, PostgreSQL's BIGINT).
FIRST_ROW_ID, LAST_ROW_ID = -(2**63), 2**63 - 1
#: How many changed rows an audit event of the rebuild names (its counts say how many in all).
AUDITED_IDS = 100
#: The share of rows written or dropped past which PostgreSQL's table is written anew: below
#: it, autovacuum's reuse of the space is enough, and searches need not wait for a rewrite.
COMPACT_SHARE = 0.1


def _searching(field: str, call: Callable[[], T]) -> T:
    """Run a search, a malformed query, a page past the window or a cursor naming no result as
    Invalid on its field."""
    try:
        page = call()
    except search.QueryError as error:
        raise Invalid(str(error), {field: [str(error)]}) from None
    except search.PageOutOfWindow as error:
        raise Invalid(str(error), {error.field: [str(error)]}) from None
    return page


@use_case("dataset.search")
def search_datasets(
    rt: Runtime,
    identity: Identity,
    query: str,
    page: int,
    per_page: int,
    after: str | None = None,
) -> search.Page:
    """Datasets the identity may see that match ``query`` (the language of ``store.query``)."""
    authorize(identity, "dataset.search")
    with unit_of_work(rt.engine, write=False) as work:
        found = _searching("q", lambda: search.search_datasets(
            work.session, _owner(identity), query, page, per_page, after
        ))  # fmt: skip
        found.results = describe_all(rt, work.session, found.results)
        return found


@use_case("file.search")
def search_files(
    rt: Runtime,
    identity: Identity,
    query: str,
    dataset_id: int | None,
    page: int,
    per_page: int,
    after: str | None = None,
) -> search.Page:
    """Files whose name contains ``query`` (or made on its date), optionally in one dataset."""
    authorize(identity, "file.search")
    with unit_of_work(rt.engine, write=False) as work:
        if dataset_id is not None:
            visible_dataset(work.session, identity, dataset_id)
        return _searching("q", lambda: search.search_files(
            work.session, _owner(identity), query, dataset_id, page, per_page, after
        ))  # fmt: skip


#: Fields a facet request may name at most, and values it shows of each at most.
MAX_FACET_FIELDS = 10
MAX_FACET_VALUES = 50


@use_case("dataset.search")
def facets(
    rt: Runtime, identity: Identity, query: str, fields: Sequence[str], top: int
) -> search.Facets:
    """Counts of the top values of ``fields`` among the datasets the identity may see that
    match ``query`` (built-ins ``created``, by month, ``instrument``, ``creator``; or keys)."""
    authorize(identity, "dataset.search")
    fields = list(dict.fromkeys(name.strip() for name in fields if name.strip()))
    if not fields:
        raise invalid("fields", "name at least one field: created, instrument, or a key")
    if len(fields) > MAX_FACET_FIELDS:
        raise invalid("fields", f"name at most {MAX_FACET_FIELDS} fields")
    with unit_of_work(rt.engine, write=False) as work:
        return _searching("q", lambda: search.facet_datasets(
            work.session, _owner(identity), query, fields, min(top, MAX_FACET_VALUES)
        ))  # fmt: skip


@use_case("dataset.search")
def metadata_keys(rt: Runtime, identity: Identity) -> list[Any]:
    """Every flattened metadata key on the datasets the identity may see, with its count."""
    authorize(identity, "dataset.search")
    with unit_of_work(rt.engine, write=False) as work:
        return search.metadata_keys(work.session, _owner(identity))


def _owner(identity: Identity) -> int | None:
    """Whose datasets a search covers: the user's own, or everyone's (None) for admins."""
    return None if identity.is_admin else identity.user_id


@dataclass
class Rebuilt:
    """What :func:`rebuild_search` did."""

    datasets: int = 0
    #: Rows written again (missing, or saying something else than the catalog).
    written: int = 0
    #: Rows deleted whose dataset is gone.
    dropped: int = 0
    #: The tables whose index was made again from their rows (FTS5's, on SQLite).
    indexed: tuple[str, ...] = ()


@use_case("search.rebuild")
def rebuild_search(rt: Runtime, identity: Identity, progress: Progress | None = None) -> Rebuilt:
    """Make every dataset's full-text row say what the catalog says, and on SQLite have FTS5
    index its tables again from their rows.

    For a catalog whose rows were made by another SQLite tokenizer than the server's (an upgrade
    of the SQLite library Python uses: PostgreSQL's rows hold its tokens), or written by hand.
    On SQLite, FTS5 first indexes each of its tables again in one transaction
    (``search.reindex_table``; only that undoes a tokenizer change), and the server's writes
    wait for it. Then the rows are compared with the catalog ``REBUILD_IDS`` datasets per
    transaction, each that changed something recording one audit event: the server's writes
    wait for one transaction at a time. On PostgreSQL, when more than ``COMPACT_SHARE`` of the
    rows changed, the table is then written anew (``compact``), and searches wait for it.
    """
    authorize(identity, "search.rebuild")
    progress = progress or NoProgress()
    with unit_of_work(rt.engine, write=False) as work:
        report = Rebuilt(indexed=search.fts_tables(work.session))
        datasets = work.session.execute(select(func.count()).select_from(Dataset)).scalar_one()
    # The index first: once the tokenizer changed, deleting a row takes out the entries the new
    # tokenizer makes of its text, which only an index made again holds.
    for table in report.indexed:
        progress.phase(f"indexing {table}", None)
        with unit_of_work(rt.engine) as work:
            search.reindex_table(work.session, table)
            audit.record(work, identity, "search.rebuild", "index", table, {"indexed": table})
    progress.phase("comparing", datasets)
    first = FIRST_ROW_ID
    while True:
        with unit_of_work(rt.engine) as work:
            later = col(Dataset.id) >= literal(first, BigInteger)  # BIGINT: see rewrite_texts
            last = work.session.execute(
                select(Dataset.id).where(later).order_by(col(Dataset.id))
                .offset(REBUILD_IDS - 1).limit(1)
            ).scalar()  # fmt: skip
            # The last transaction runs to the end, for rows past the newest dataset.
            last = LAST_ROW_ID if last is None else last
            done = search.rewrite_texts(work.session, first, last)
            if done.written or done.dropped:
                summary = {
                    "datasets": done.datasets,
                    "written": len(done.written),
                    "dropped": len(done.dropped),
                    "ids": sorted(done.written + done.dropped)[:AUDITED_IDS],
                }
                audit.record(work, identity, "search.rebuild", SEARCH_TABLE, None, summary)
        report.datasets += done.datasets
        report.written += len(done.written)
        report.dropped += len(done.dropped)
        progress.advance(done.datasets)
        if last == LAST_ROW_ID:
            break
        first = last + 1
    if report.written + report.dropped > report.datasets * COMPACT_SHARE:
        try:
            compact(rt.engine, SEARCH_TABLE)
        except OperationalError as error:
            raise Conflict(
                f"the rows were rewritten ({report.written} written, {report.dropped} dropped), "
                f"but writing {SEARCH_TABLE} anew stopped ({error.orig}): run "
                f"VACUUM (FULL, ANALYZE) {SEARCH_TABLE} when no search is running"
            ) from None
    return report
