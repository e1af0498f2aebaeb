"""PostgreSQL's key counts per statement rather than per metadata value (nothing on SQLite).

Revision 0007 counted ``metadatakey`` with a row trigger: every value inserted updated one of a
few count rows, and within one transaction each update left a row version the next had to step
over (a ``COPY`` of 125,000 values took 50 s, against 1.5 s for 75,000 files). Here the counts
are kept by statement triggers reading the statement's transition tables: one grouped update or
upsert per statement and key, whatever the number of rows. The counts are the same as before:
a value counts for its dataset's creator under its key and JSON type; a key whose count reaches
zero is removed. An update is counted as its old rows leaving and its new rows arriving, netted
per key, so one that changes no counted column (``metadata_field_id``) changes no count row.

A dataset's values still go before the dataset does (0007's ``metadatakey_dataset_delete``):
the trigger of that nested ``DELETE`` runs when it ends, while the dataset can still be read.

Revision ID: 0011_statement_key_counts
Revises: 0010_covering_value_indexes
Create Date: 2026-12-06
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0011_statement_key_counts"
down_revision = "0010_covering_value_indexes"
branch_labels = None
depends_on = None

#: Revision 0007, whose JSON type expression (the words SQLite's ``json_type`` gives) this one
#: counts by and whose row trigger a downgrade makes again. Alembic loads revisions as files,
#: not as the package's modules, hence the full name.
_0007 = "dataflow_lite.store.migrations.versions.0007_postgresql_search"
KIND = importlib.import_module(_0007).KIND

#: Each changed value as (creator, key, JSON type, +1 or -1), from one transition table.
_ROWS = (
    "SELECT d.creator_id, v.field_name, {kind} AS value_type, {sign} AS n "
    "FROM {table} AS v JOIN dataset AS d ON d.id = v.dataset_id"
)
_NET = (
    "SELECT creator_id, field_name, value_type, sum(n) AS n FROM ({rows}) AS change "
    "GROUP BY creator_id, field_name, value_type HAVING sum(n) {test} 0"
)
_DOWN = """
  UPDATE metadatakey AS k SET datasets = k.datasets + net.n FROM ({net}) AS net
    WHERE k.creator_id = net.creator_id AND k.field_name = net.field_name
      AND k.value_type = net.value_type;
  DELETE FROM metadatakey WHERE datasets <= 0
    AND field_name IN (SELECT field_name FROM old_values);
"""
_UP = """
  INSERT INTO metadatakey (creator_id, field_name, value_type, datasets) {net}
    ON CONFLICT (creator_id, field_name, value_type)
    DO UPDATE SET datasets = metadatakey.datasets + excluded.datasets;
"""


def _function(tables: dict[str, int]) -> str:
    """A trigger function's body counting the rows of ``tables`` (transition table: sign)."""
    rows = " UNION ALL ".join(
        _ROWS.format(kind=KIND.format(v="v.value"), sign=sign, table=table)
        for table, sign in tables.items()
    )
    body = ""
    if "old_values" in tables:
        body += _DOWN.format(net=_NET.format(rows=rows, test="<"))
    if "new_values" in tables:
        body += _UP.format(net=_NET.format(rows=rows, test=">"))
    return f"BEGIN{body}  RETURN NULL;\nEND"


#: (trigger and function name, event, transition tables, the tables' signs)
_COUNTS = [
    ("metadatakey_count_insert", "INSERT", "NEW TABLE AS new_values", {"new_values": 1}),
    ("metadatakey_count_delete", "DELETE", "OLD TABLE AS old_values", {"old_values": -1}),
    ("metadatakey_count_update", "UPDATE", "OLD TABLE AS old_values NEW TABLE AS new_values",
     {"old_values": -1, "new_values": 1}),
]  # fmt: skip


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # PostgreSQL allows transition tables only on a trigger of one event without a column
    # list: three triggers, and an update of any column is netted (see the docstring).
    bind.exec_driver_sql("DROP TRIGGER metadatakey_count ON metadatavalue")
    bind.exec_driver_sql("DROP FUNCTION metadatakey_count()")
    for name, event, referencing, tables in _COUNTS:
        bind.exec_driver_sql(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$body${_function(tables)}$body$"
        )
        bind.exec_driver_sql(
            f"CREATE TRIGGER {name} AFTER {event} ON metadatavalue REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for name, *_ in _COUNTS:
        bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON metadatavalue")
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}()")
    before = importlib.import_module(_0007)
    bind.exec_driver_sql(
        "CREATE FUNCTION metadatakey_count() RETURNS trigger LANGUAGE plpgsql AS "
        f"$body${before.FUNCTIONS['metadatakey_count']}$body$"
    )
    bind.exec_driver_sql(f"CREATE TRIGGER metadatakey_count {before.TRIGGERS['metadatakey_count']}")
