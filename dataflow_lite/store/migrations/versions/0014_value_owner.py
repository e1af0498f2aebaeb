"""Each metadata value names its dataset's owner, so SQLite lists a user's values by key alone.

``metadatavalue`` gains ``owner_id``, the dataset's creator. On SQLite the typed value indexes
(0010) become (key, owner, value, dataset): a user's ``Sample-Temperature>300`` is then one
range of the index, counted to 10,001 in 0.6 ms at a million datasets, where each entry of
everyone's range had its owner looked up (14 ms). An admin's search reads each user's range
(``owner_id IN (SELECT id FROM user)``).

The writers here give the owner; on SQLite triggers set it from the dataset whenever a value
written or moved names another, and a dataset's values follow it when it is written after them
or given another creator (by a raw script or an older tool: the services never do), so no value
is missing from its owner's list. A later migration that recreates ``metadatavalue`` or
``dataset`` in batch mode must create them again (:data:`TRIGGERS`). PostgreSQL's search does
not read the column (its indexes are unchanged): it is filled by the writers and by this
migration, and left NULL by a raw ``INSERT`` without it.

Revision ID: 0014_value_owner
Revises: 0013_one_key_index
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014_value_owner"
down_revision = "0013_one_key_index"
branch_labels = None
depends_on = None

_NUMBER = (
    "(field_name, {owner}json_extract(value, '$'), dataset_id) "
    "WHERE json_type(value) IN ('integer', 'real')"
)
_TEXT = (
    "(field_name, {owner}lower(json_extract(value, '$')), dataset_id) "
    "WHERE json_type(value) = 'text'"
)
_OWNER = "(SELECT creator_id FROM dataset WHERE id = new.dataset_id)"
_SET = f"WHEN new.owner_id IS NOT {_OWNER} BEGIN " \
       f"UPDATE metadatavalue SET owner_id = {_OWNER} WHERE id = new.id; END"  # fmt: skip
_FOLLOW = "BEGIN UPDATE metadatavalue SET owner_id = new.creator_id " \
          "WHERE dataset_id = new.id AND owner_id IS NOT new.creator_id; END"  # fmt: skip
TRIGGERS = {
    "metadatavalue_owner_insert": f"AFTER INSERT ON metadatavalue {_SET}",
    "metadatavalue_owner_update": f"AFTER UPDATE OF dataset_id, owner_id ON metadatavalue {_SET}",
    "dataset_owner_insert": f"AFTER INSERT ON dataset {_FOLLOW}",
    "dataset_owner_update": f"AFTER UPDATE OF creator_id ON dataset {_FOLLOW}",
}


def _indexes(owner: str) -> None:
    bind = op.get_bind()
    for name, columns in (("number", _NUMBER), ("text", _TEXT)):
        bind.exec_driver_sql(f"DROP INDEX IF EXISTS ix_metadatavalue_{name}")
        bind.exec_driver_sql(
            f"CREATE INDEX ix_metadatavalue_{name} ON metadatavalue " + columns.format(owner=owner)
        )


def upgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql("ALTER TABLE metadatavalue ADD COLUMN owner_id INTEGER")
    if bind.dialect.name == "postgresql":
        # 0011's key counts would read every value twice over, to change no count.
        bind.exec_driver_sql("ALTER TABLE metadatavalue DISABLE TRIGGER metadatakey_count_update")
        bind.exec_driver_sql(
            "UPDATE metadatavalue AS m SET owner_id = d.creator_id FROM dataset AS d "
            "WHERE d.id = m.dataset_id"
        )
        bind.exec_driver_sql("ALTER TABLE metadatavalue ENABLE TRIGGER metadatakey_count_update")
        return
    bind.exec_driver_sql(
        "UPDATE metadatavalue SET owner_id = "
        "(SELECT creator_id FROM dataset WHERE dataset.id = metadatavalue.dataset_id)"
    )
    _indexes("owner_id, ")
    for name, body in TRIGGERS.items():
        bind.exec_driver_sql(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in TRIGGERS:
            bind.exec_driver_sql(f"DROP TRIGGER {name}")
        _indexes("")
    op.drop_column("metadatavalue", "owner_id")
