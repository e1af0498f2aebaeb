"""Finding datasets and files: searches in the language of ``q``, facets and metadata keys."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import func, text
from sqlmodel import select

from dataflow_lite.bootstrap import Runtime
from dataflow_lite.services import audit
from dataflow_lite.services.datasets import describe_all, visible_dataset
from dataflow_lite.services.errors import Invalid, invalid
from dataflow_lite.services.identity import Identity
from dataflow_lite.services.imports import NoProgress, Progress
from dataflow_lite.services.policy import authorize, use_case
from dataflow_lite.store import search
from dataflow_lite.store.db import refresh_statistics, unit_of_work
from dataflow_lite.store.migrations.baseline import SEARCH_TABLE
from dataflow_lite.store.models import Dataset

T = TypeVar("T")

#: Dataset ids whose full-text rows one transaction of :func:`rebuild_search` writes again.
REBUILD_IDS = 10_000


def _searching(field: str, call: Callable[[], T]) -> T:
    """Run a search, a malformed query or a page past the window as Invalid on its field."""
    try:
        page = call()
    except search.QueryError as error:
        raise Invalid(str(error), {field: [str(error)]}) from None
    except search.PageOutOfWindow as error:
        raise Invalid(str(error), {"page": [str(error)]}) from None
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


@use_case("search.rebuild")
def rebuild_search(rt: Runtime, identity: Identity, progress: Progress | None = None) -> int:
    """Write every dataset's full-text row again from the catalog; how many were written.

    For a catalog whose rows were made by another SQLite tokenizer than the server's (an upgrade
    of the SQLite library Python uses: PostgreSQL's rows hold its tokens), or written by hand.
    Each transaction rewrites ``REBUILD_IDS`` ids and records one audit event, so searches stay
    right and the server's writes wait for one transaction at a time. On SQLite, FTS5 then
    indexes each of its tables again in one transaction (``search.reindex_table``): only that
    undoes a tokenizer change, and the server's writes wait for it.
    """
    authorize(identity, "search.rebuild")
    progress = progress or NoProgress()
    with unit_of_work(rt.engine, write=False) as work:
        datasets, low, high = work.session.execute(
            select(func.count(), func.min(Dataset.id), func.max(Dataset.id))
        ).one()
        # Rows whose dataset is gone are dropped too, wherever their ids lie.
        text_low, text_high = work.session.execute(
            text(f"SELECT min(rowid), max(rowid) FROM {SEARCH_TABLE}")
        ).one()
    ids = [ident for ident in (low, high, text_low, text_high) if ident is not None]
    progress.phase("rewriting", datasets)
    written = 0
    for first in range(min(ids, default=1), max(ids, default=0) + 1, REBUILD_IDS):
        last = first + REBUILD_IDS - 1
        with unit_of_work(rt.engine) as work:
            count = search.rewrite_texts(work.session, first, last)
            audit.record(
                work, identity, "search.rebuild", "dataset", f"{first}-{last}", {"datasets": count}
            )
        written += count
        progress.advance(count)
    with unit_of_work(rt.engine, write=False) as work:
        tables = search.fts_tables(work.session)
    for table in tables:
        progress.phase(f"indexing {table}", None)
        with unit_of_work(rt.engine) as work:
            search.reindex_table(work.session, table)
            audit.record(work, identity, "search.rebuild", "index", table, {"rebuilt": table})
    refresh_statistics(rt.engine, [SEARCH_TABLE])
    return written
