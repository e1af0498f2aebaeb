"""Search at a million datasets: typed value indexes, a trigram index of file names, key counts.

* ``dataset``: ``(creator_id, created_at)`` and ``(instrument_id, created_at)``, so a user's or an
  instrument's datasets are walked newest first without a sort.
* ``metadatavalue``: ``(field_name, dataset_id)`` for ``key:*``; numbers by value
  (``json_extract``) and text by its lowercase (both partial, on ``json_type``), for
  ``key>N``, ``key:N..M``, ``key:value`` and dates kept as text.
* ``datasetfile``: ``created_at``, for file search by day; ``file_name_text``, an FTS5 trigram
  index of file names (external content: the names stay in ``datasetfile``), for substrings.
* ``metadatakey``: how many datasets of each user have each flattened key, per JSON type.

Whatever writes the catalog (the services, a bulk importer using plain INSERTs) keeps all of it
right: indexes by SQLite itself, ``file_name_text`` and ``metadatakey`` by triggers. A later
migration that recreates ``datasetfile``, ``metadatavalue`` or ``dataset`` in batch mode drops
their triggers and must create them again (:data:`TRIGGERS`).

Revision ID: 0006_search_indexes
Revises: 0005_resumable_uploads
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_search_indexes"
down_revision = "0005_resumable_uploads"
branch_labels = None
depends_on = None

KIND = "coalesce(json_type({v}), 'null')"
INDEXES = [
    "CREATE INDEX ix_dataset_creator_created ON dataset (creator_id, created_at)",
    "CREATE INDEX ix_dataset_instrument_created ON dataset (instrument_id, created_at)",
    "CREATE INDEX ix_datasetfile_created_at ON datasetfile (created_at)",
    "CREATE INDEX ix_metadatavalue_key ON metadatavalue (field_name, dataset_id)",
    "CREATE INDEX ix_metadatavalue_number ON metadatavalue (field_name, json_extract(value, '$'))"
    " WHERE json_type(value) IN ('integer', 'real')",
    "CREATE INDEX ix_metadatavalue_text ON metadatavalue "
    "(field_name, lower(json_extract(value, '$'))) WHERE json_type(value) = 'text'",
]
FILE_INDEX = (
    "CREATE VIRTUAL TABLE file_name_text USING fts5("
    "name, content = 'datasetfile', content_rowid = 'id', tokenize = 'trigram')"
)
_COUNT_UP = (
    "INSERT INTO metadatakey (creator_id, field_name, value_type, datasets) "
    f"SELECT creator_id, new.field_name, {KIND.format(v='new.value')}, 1 FROM dataset "
    "WHERE id = new.dataset_id "
    "ON CONFLICT (creator_id, field_name, value_type) DO UPDATE SET datasets = datasets + 1;"
)
_COUNT_DOWN = (
    "UPDATE metadatakey SET datasets = datasets - 1 WHERE field_name = old.field_name "
    f"AND value_type = {KIND.format(v='old.value')} "
    "AND creator_id = (SELECT creator_id FROM dataset WHERE id = old.dataset_id);"
    "DELETE FROM metadatakey WHERE field_name = old.field_name AND datasets <= 0;"
)
TRIGGERS = {
    "datasetfile_name_insert": "AFTER INSERT ON datasetfile BEGIN "
    "INSERT INTO file_name_text (rowid, name) VALUES (new.id, new.name); END",
    "datasetfile_name_delete": "AFTER DELETE ON datasetfile BEGIN "
    "INSERT INTO file_name_text (file_name_text, rowid, name) VALUES ('delete', old.id, old.name);"
    " END",
    "datasetfile_name_update": "AFTER UPDATE OF name ON datasetfile BEGIN "
    "INSERT INTO file_name_text (file_name_text, rowid, name) VALUES ('delete', old.id, old.name);"
    " INSERT INTO file_name_text (rowid, name) VALUES (new.id, new.name); END",
    "metadatakey_insert": f"AFTER INSERT ON metadatavalue BEGIN {_COUNT_UP} END",
    "metadatakey_delete": f"AFTER DELETE ON metadatavalue BEGIN {_COUNT_DOWN} END",
    "metadatakey_update": "AFTER UPDATE OF field_name, value, dataset_id ON metadatavalue BEGIN "
    f"{_COUNT_DOWN} {_COUNT_UP} END",
    # A dataset's values go before it does, while its creator can still be read (a cascade
    # would remove them after the dataset row, and the count would not come down).
    "metadatakey_dataset_delete": "BEFORE DELETE ON dataset BEGIN "
    "DELETE FROM metadatavalue WHERE dataset_id = old.id; END",
}


#: The plain column indexes, the same on every database.
PLAIN_INDEXES = INDEXES[:4]


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    # On PostgreSQL, the JSON expression indexes, the trigram table and the triggers are the
    # work of its search backend, which is not written yet: only the plain parts are made.
    for statement in INDEXES if sqlite else PLAIN_INDEXES:
        bind.exec_driver_sql(statement)
    if sqlite:
        bind.exec_driver_sql(FILE_INDEX)
        bind.exec_driver_sql("INSERT INTO file_name_text (file_name_text) VALUES ('rebuild')")
    op.create_table(
        "metadatakey",
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("field_name", sa.String(), nullable=False),
        sa.Column("value_type", sa.String(), nullable=False),
        sa.Column("datasets", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["creator_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("creator_id", "field_name", "value_type"),
    )
    if not sqlite:
        return
    bind.exec_driver_sql(
        "INSERT INTO metadatakey (creator_id, field_name, value_type, datasets) "
        f"SELECT d.creator_id, m.field_name, {KIND.format(v='m.value')}, count(*) "
        "FROM metadatavalue AS m JOIN dataset AS d ON d.id = m.dataset_id "
        "GROUP BY 1, 2, 3"
    )
    for name, body in TRIGGERS.items():
        bind.exec_driver_sql(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    bind = op.get_bind()
    for name in TRIGGERS:
        bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("metadatakey")
    bind.exec_driver_sql("DROP TABLE IF EXISTS file_name_text")
    for statement in INDEXES:
        bind.exec_driver_sql(f"DROP INDEX IF EXISTS {statement.split()[2]}")
