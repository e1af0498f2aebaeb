"""Bring databases made before a constraint, index, column or table existed up to the baseline.

``create_all`` only ever created missing tables, so a database from an early build keeps the
shape it was born with, and stamping it as ``0001_baseline`` says nothing about what it holds.
This revision compares the database with the frozen baseline and adds what is missing:

- tables (``loginthrottle``, ``endpointcredential``, ``transfer`` came after the first build);
- columns (``user.password_hash``, ``metadatafield.persist``, ``transfer.claim``); a NOT NULL
  one gets a server default so existing rows have a value;
- indexes, and unique constraints: the table is recreated in batch mode from the baseline's
  definition, so it ends exactly as a new database has it.

The ``(endpoint_id, folder)`` unique on ``dataset`` came last: before it, two datasets could be
given the same folder. Where they were, every dataset after the first keeps its rows but gets
the folder ``<folder>-<id>``, which is how the code names a folder that is taken. Files already
transferred into the shared folder stay where they are; what is sent from now on, and the
dataset's ``metadata.json``, goes to the new folder. Any other unique constraint that existing
rows break stops the upgrade (nothing is changed) with the table and the values named.

On a database that already has the baseline's shape this revision changes nothing.

Revision ID: 0002_constraints_added_later
Revises: 0001_baseline
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dataflow_lite.store.migrations import baseline

revision = "0002_constraints_added_later"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

#: Where rows may already break a unique constraint, and the fix the code itself would make.
DATASET_FOLDER = ("dataset", ("endpoint_id", "folder"))


def upgrade() -> None:
    bind = op.get_bind()
    frozen = baseline.metadata()
    present = set(sa.inspect(bind).get_table_names())
    for table in frozen.sorted_tables:
        if table.name not in present:
            table.create(bind)
            continue
        _add_missing_columns(bind, table)
        _add_missing_uniques(bind, table)
        _add_missing_indexes(bind, table)
    baseline.create_search_table(bind)


def downgrade() -> None:
    """Nothing to undo: what this revision adds is part of the baseline."""


def _add_missing_columns(bind: sa.Connection, table: sa.Table) -> None:
    have = {column["name"] for column in sa.inspect(bind).get_columns(table.name)}
    for column in table.columns:
        if column.name in have:
            continue
        # Only a boolean was ever added NOT NULL (metadatafield.persist): False for old rows.
        default = None if column.nullable else sa.false()
        op.add_column(
            table.name,
            sa.Column(column.name, column.type, nullable=column.nullable, server_default=default),
        )


def _unique_sets(bind: sa.Connection, name: str) -> set[tuple[str, ...]]:
    inspector = sa.inspect(bind)
    found = {tuple(c["column_names"]) for c in inspector.get_unique_constraints(name)}
    # An index on an expression names no column (None): it is no unique set of columns.
    found |= {
        tuple(column for column in i["column_names"] if column is not None)
        for i in inspector.get_indexes(name)
        if i["unique"]
    }
    return found


def _add_missing_uniques(bind: sa.Connection, table: sa.Table) -> None:
    wanted = [c for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    have = _unique_sets(bind, table.name)
    missing = [c for c in wanted if tuple(c.columns.keys()) not in have]
    if not missing:
        return
    for constraint in missing:
        columns = tuple(constraint.columns.keys())
        if (table.name, columns) == DATASET_FOLDER:
            _give_later_datasets_their_own_folder(bind)
        else:
            _refuse_duplicates(bind, table.name, columns)
    # Rebuilt from the baseline's definition: the copy gets every constraint and index at once.
    with op.batch_alter_table(table.name, copy_from=table, recreate="always"):
        pass


def _add_missing_indexes(bind: sa.Connection, table: sa.Table) -> None:
    have = {index["name"] for index in sa.inspect(bind).get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in have:
            if index.unique:
                _refuse_duplicates(bind, table.name, tuple(index.columns.keys()))
            op.create_index(
                index.name, table.name, list(index.columns.keys()), unique=bool(index.unique)
            )


def _give_later_datasets_their_own_folder(bind: sa.Connection) -> None:
    rows = bind.execute(sa.text("SELECT id, endpoint_id, folder FROM dataset ORDER BY id"))
    taken: set[tuple[str, str]] = set()
    for dataset_id, endpoint_id, folder in rows.all():
        new_folder = folder
        while (endpoint_id, new_folder) in taken:
            new_folder = f"{new_folder}-{dataset_id}"
        taken.add((endpoint_id, new_folder))
        if new_folder != folder:
            bind.execute(
                sa.text("UPDATE dataset SET folder = :folder WHERE id = :id"),
                {"folder": new_folder, "id": dataset_id},
            )


def _refuse_duplicates(bind: sa.Connection, table: str, columns: tuple[str, ...]) -> None:
    listed = ", ".join(f'"{column}"' for column in columns)
    duplicate = bind.exec_driver_sql(
        f'SELECT {listed}, count(*) FROM "{table}" GROUP BY {listed} HAVING count(*) > 1 LIMIT 1'
    ).first()
    if duplicate is not None:
        values = ", ".join(f"{c}={v!r}" for c, v in zip(columns, duplicate, strict=False))
        raise RuntimeError(
            f"cannot add the unique ({', '.join(columns)}) to {table}: {duplicate[-1]} rows "
            f"have {values}; remove the duplicates (the backup is untouched) and upgrade again"
        )
