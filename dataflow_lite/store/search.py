"""Finding datasets and files: words through SQLite's FTS5 index, dates by the day.

Each dataset has one row in the ``dataset_text`` full-text table (its rowid is the dataset id)
holding its name, metadata names and values, and file names; it is rebuilt whenever the dataset
changes. A query of the form ``YYYY-MM-DD`` finds what was created that day (UTC).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, func, text
from sqlmodel import Session, col, select

from dataflow_lite.store.migrations.baseline import SEARCH_TABLE
from dataflow_lite.store.models import Dataset, DatasetFile, MetadataValue

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Page:
    """One page of results, with the total count across pages."""

    total: int
    has_more: bool
    results: Sequence[Any]


def reindex(session: Session, dataset_id: int) -> None:
    """Rebuild the full-text row of one dataset from the catalog."""
    dataset = session.get(Dataset, dataset_id)
    assert dataset is not None
    values = session.exec(select(MetadataValue).where(MetadataValue.dataset_id == dataset_id))
    body = text_body(
        dataset.name,
        ((value.field_name, value.value) for value in values),
        session.exec(select(DatasetFile.name).where(DatasetFile.dataset_id == dataset_id)),
    )
    session.execute(text(f"DELETE FROM {SEARCH_TABLE} WHERE rowid = :id"), {"id": dataset_id})
    session.execute(
        text(f"INSERT INTO {SEARCH_TABLE} (rowid, body) VALUES (:id, :body)"),
        {"id": dataset_id, "body": body},
    )


def text_body(name: str, values: Iterable[tuple[str, Any]], file_names: Iterable[str]) -> str:
    """A dataset's full-text row: its name, each metadata name and value, each file name.

    The one place that lays the row out: ``reindex`` and the bulk import both write it. A value
    is indexed as ``str(value)`` (``373``, ``True``, a list as Python shows it).
    """
    words = [name]
    for field_name, value in values:
        words += (field_name, str(value))
    words += file_names
    return "\n".join(words)


def add_names(session: Session, dataset_id: int, names: Sequence[str]) -> None:
    """Add a new file's name (and its folders') to the dataset's full-text row.

    Appending costs the same however many files the dataset has, where rebuilding the row reads
    every one of them back; a name listed twice finds the same datasets.
    """
    added = session.execute(
        text(f"UPDATE {SEARCH_TABLE} SET body = body || :names WHERE rowid = :id"),
        {"id": dataset_id, "names": "".join("\n" + name for name in names)},
    )
    if getattr(added, "rowcount", 0) == 0:  # no row yet (a catalog from before the index)
        reindex(session, dataset_id)


def fts_query(query: str) -> str | None:
    """An FTS5 query matching every whitespace-separated term as a prefix phrase, or None.

    ``AFM_Topography.PNG`` becomes the phrase ``"AFM_Topography.PNG"*``, which the tokenizer
    splits the same way it split the indexed file name. Terms with no letter or digit are dropped.
    """
    # Control characters (NUL) would end FTS5's quoted string early: they separate terms here.
    query = "".join(char if char.isprintable() else " " for char in query)
    terms = [term for term in query.split() if any(char.isalnum() for char in term)]
    if not terms:
        return None
    return " ".join('"' + term.replace('"', '""') + '"*' for term in terms)


def day_range(query: str) -> tuple[datetime, datetime] | None:
    """The UTC day a ``YYYY-MM-DD`` query names, or None for any other query."""
    if not DATE.match(query.strip()):
        return None
    try:
        start = datetime.strptime(query.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return start, start + timedelta(days=1)


def _page(session: Session, statement: Any, order: Sequence[Any], page: int, per_page: int) -> Page:
    total = session.exec(select(func.count()).select_from(statement.subquery())).one()
    rows = session.exec(
        statement.order_by(*order).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return Page(total=total, has_more=page * per_page < total, results=rows)


def search_datasets(
    session: Session, owner_id: int | None, query: str, page: int, per_page: int
) -> Page:
    """Datasets of ``owner_id`` (None: everyone) matching ``query`` (all if empty), newest first."""
    statement = select(Dataset)
    if owner_id is not None:
        statement = statement.where(Dataset.creator_id == owner_id)
    if day := day_range(query):
        statement = statement.where(Dataset.created_at >= day[0], Dataset.created_at < day[1])
    elif query.strip():
        match = fts_query(query)
        if match is None:
            return Page(total=0, has_more=False, results=[])
        matching = text(f"SELECT rowid FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH :match")
        statement = statement.where(
            col(Dataset.id).in_(matching.bindparams(match=match).columns(rowid=Integer()))
        )
    return _page(
        session, statement, [col(Dataset.created_at).desc(), col(Dataset.id).desc()], page, per_page
    )


def search_files(
    session: Session,
    owner_id: int | None,
    query: str,
    dataset_id: int | None,
    page: int,
    per_page: int,
) -> Page:
    """Files and directories of ``owner_id``'s datasets whose name contains ``query`` (or
    created on its day)."""
    statement = select(DatasetFile).join(Dataset, col(Dataset.id) == DatasetFile.dataset_id)
    if owner_id is not None:
        statement = statement.where(Dataset.creator_id == owner_id)
    if dataset_id is not None:
        statement = statement.where(DatasetFile.dataset_id == dataset_id)
    if day := day_range(query):
        statement = statement.where(
            DatasetFile.created_at >= day[0], DatasetFile.created_at < day[1]
        )
    elif query.strip():
        escaped = query.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(col(DatasetFile.name).ilike(f"%{escaped}%", escape="\\"))
    return _page(session, statement, [col(DatasetFile.id)], page, per_page)
