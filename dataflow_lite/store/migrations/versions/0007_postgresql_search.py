"""Search on PostgreSQL: trigram indexes, typed value indexes and the key counts' triggers.

What revision 0006 gives SQLite, in PostgreSQL's terms (nothing is done on SQLite):

* ``pg_trgm``, and GIN trigram indexes on ``datasetfile.name`` (``file:`` and file search are
  ``LIKE '%…%'``) and on ``lower(dataset_text.body)`` (words are regular expressions over it).
* ``metadatavalue``: numbers by value and text by its ASCII lowercase (partial, on the JSON
  type), the expressions :mod:`dataflow_lite.store.pg_search` compares.
* ``metadatakey``: filled from the values already there, then kept by triggers, as on SQLite;
  a dataset's values go before the dataset does, while its creator can still be read.

The expressions are written out here rather than imported: a revision stays as it was applied.

Revision ID: 0007_postgresql_search
Revises: 0006_search_indexes
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007_postgresql_search"
down_revision = "0006_search_indexes"
branch_labels = None
depends_on = None

_TYPE = "coalesce(jsonb_typeof({v}::jsonb), 'null')"
#: The type SQLite's ``json_type`` names for a JSON text value.
KIND = (
    f"CASE {_TYPE} WHEN 'number' THEN "
    "CASE WHEN {v} ~ '^\\s*-?[0-9]+\\s*$' THEN 'integer' ELSE 'real' END "
    "WHEN 'string' THEN 'text' WHEN 'boolean' THEN {v}::jsonb #>> '{{}}' "
    f"ELSE {_TYPE} END"
)
_SCALAR = "(value::jsonb #>> '{}')"
_LOWER = "translate({}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
INDEXES = [
    "CREATE INDEX ix_datasetfile_name_trgm ON datasetfile USING gin (name gin_trgm_ops)",
    "CREATE INDEX ix_dataset_text_body_trgm ON dataset_text USING gin (lower(body) gin_trgm_ops)",
    "CREATE INDEX ix_metadatavalue_number ON metadatavalue (field_name, "
    "(CASE WHEN jsonb_typeof(value::jsonb) = 'number' THEN (value::jsonb #>> '{}')::numeric END))"
    " WHERE jsonb_typeof(value::jsonb) = 'number'",
    "CREATE INDEX ix_metadatavalue_text ON metadatavalue "
    f"(field_name, ({_LOWER.format(_SCALAR)})) "
    "WHERE jsonb_typeof(value::jsonb) = 'string'",
]
_COUNT = f"""
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    UPDATE metadatakey SET datasets = datasets - 1 WHERE field_name = OLD.field_name
      AND value_type = {KIND.format(v="OLD.value")}
      AND creator_id = (SELECT creator_id FROM dataset WHERE id = OLD.dataset_id);
    DELETE FROM metadatakey WHERE field_name = OLD.field_name AND datasets <= 0;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO metadatakey (creator_id, field_name, value_type, datasets)
      SELECT creator_id, NEW.field_name, {KIND.format(v="NEW.value")}, 1 FROM dataset
      WHERE id = NEW.dataset_id
      ON CONFLICT (creator_id, field_name, value_type)
      DO UPDATE SET datasets = metadatakey.datasets + 1;
  END IF;
  RETURN NULL;
END
"""
_VALUES_FIRST = """
BEGIN
  DELETE FROM metadatavalue WHERE dataset_id = OLD.id;
  RETURN OLD;
END
"""
FUNCTIONS = {"metadatakey_count": _COUNT, "metadatakey_values_first": _VALUES_FIRST}
TRIGGERS = {
    "metadatakey_count": "AFTER INSERT OR DELETE OR UPDATE OF field_name, value, dataset_id "
    "ON metadatavalue FOR EACH ROW EXECUTE FUNCTION metadatakey_count()",
    "metadatakey_dataset_delete": "BEFORE DELETE ON dataset "
    "FOR EACH ROW EXECUTE FUNCTION metadatakey_values_first()",
}
_TABLE_OF = {"metadatakey_count": "metadatavalue", "metadatakey_dataset_delete": "dataset"}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for statement in INDEXES:
        bind.exec_driver_sql(statement)
    bind.exec_driver_sql("DELETE FROM metadatakey")
    bind.exec_driver_sql(
        "INSERT INTO metadatakey (creator_id, field_name, value_type, datasets) "
        f"SELECT d.creator_id, m.field_name, {KIND.format(v='m.value')}, count(*) "
        "FROM metadatavalue AS m JOIN dataset AS d ON d.id = m.dataset_id GROUP BY 1, 2, 3"
    )
    for name, body in FUNCTIONS.items():
        bind.exec_driver_sql(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body${body}$body$"
        )
    for name, body in TRIGGERS.items():
        bind.exec_driver_sql(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for name, table in _TABLE_OF.items():
        bind.exec_driver_sql(f'DROP TRIGGER IF EXISTS {name} ON "{table}"')
    for name in FUNCTIONS:
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}()")
    for statement in INDEXES:
        bind.exec_driver_sql(f"DROP INDEX IF EXISTS {statement.split()[2]}")
