"""PostgreSQL lists a user's words and values alone: tokens in a GIN index, owners in the typed
value indexes (nothing is done on SQLite, which has both since 0012 and 0014).

* ``dataset_text`` gains ``tokens``, a ``tsvector`` of the tokens FTS5 would make of the row and
  of its owner's lexeme (:mod:`dataflow_lite.store.pg_words`: written by the catalog's writers,
  never parsed by PostgreSQL), indexed by GIN. A word is then a lexeme (or the lexemes a prefix
  begins) rather than a regular expression checked on every row holding its trigrams: a user's
  word in one dataset in five was counted to 10,001 in 200 ms at a million datasets. The
  trigram index of the text (0007) goes: nothing reads it. The rows already there are given
  their tokens here, by the tokenizer of the release that applies this revision.
* The typed value indexes become (key, owner, value) and cover the dataset and the value, so a
  user's ``Count:10..19`` is one range of one index read without the table (3 ms to 10,001
  instead of 165 ms through everyone's values). Text is indexed by its first
  :data:`TEXT_PREFIX` characters: a whole text over 2,704 bytes could not be indexed at all, and
  such a value could not be stored.
* Each value's ``owner_id`` (0014) is kept by triggers, as on SQLite: set from the dataset after
  any statement that writes values naming another owner or none (a raw ``INSERT``), and moved
  with a dataset given another creator.

Revision ID: 0015_postgresql_owner_lists
Revises: 0014_value_owner
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from dataflow_lite.store import pg_words, sqlite_words

revision = "0015_postgresql_owner_lists"
down_revision = "0014_value_owner"
branch_labels = None
depends_on = None

BATCH = 10_000
#: Characters of a text value its index holds (a value is compared whole on its row).
TEXT_PREFIX = 200
_SCALAR = "(value::jsonb #>> '{}')"
_FOLDED = f"translate({_SCALAR}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
_NUMBER = f"(CASE WHEN jsonb_typeof(value::jsonb) = 'number' THEN {_SCALAR}::numeric END)"
_INDEXES = {
    "before": {
        "number": f"(field_name, {_NUMBER}) WHERE jsonb_typeof(value::jsonb) = 'number'",
        "text": f"(field_name, ({_FOLDED})) WHERE jsonb_typeof(value::jsonb) = 'string'",
    },
    "after": {
        "number": f"(field_name, owner_id, {_NUMBER}) INCLUDE (dataset_id, value) "
        "WHERE jsonb_typeof(value::jsonb) = 'number'",
        "text": f"(field_name, owner_id, left({_FOLDED}, {TEXT_PREFIX})) INCLUDE (dataset_id) "
        "WHERE jsonb_typeof(value::jsonb) = 'string'",
    },
}
_MISPLACED = (
    "FROM new_values AS n JOIN dataset AS d ON d.id = n.dataset_id "
    "WHERE n.owner_id IS DISTINCT FROM d.creator_id"
)
#: The fix is itself an update: it runs only when a value is misplaced, so the trigger it fires
#: again finds none and stops.
_OWNER = f"""
BEGIN
  IF EXISTS (SELECT 1 {_MISPLACED}) THEN
    UPDATE metadatavalue AS m SET owner_id = d.creator_id {_MISPLACED} AND m.id = n.id;
  END IF;
  RETURN NULL;
END
"""
_FOLLOW = """
BEGIN
  UPDATE metadatavalue SET owner_id = NEW.creator_id
    WHERE dataset_id = NEW.id AND owner_id IS DISTINCT FROM NEW.creator_id;
  RETURN NULL;
END
"""
FUNCTIONS = {"metadatavalue_owner": _OWNER, "dataset_owner_follow": _FOLLOW}
TRIGGERS = {
    "metadatavalue_owner_insert": ("metadatavalue", "AFTER INSERT ON metadatavalue REFERENCING "
                                   "NEW TABLE AS new_values FOR EACH STATEMENT EXECUTE FUNCTION "
                                   "metadatavalue_owner()"),
    "metadatavalue_owner_update": ("metadatavalue", "AFTER UPDATE ON metadatavalue REFERENCING "
                                   "NEW TABLE AS new_values FOR EACH STATEMENT EXECUTE FUNCTION "
                                   "metadatavalue_owner()"),
    "dataset_owner_follow": ("dataset", "AFTER UPDATE OF creator_id ON dataset FOR EACH ROW "
                             "WHEN (OLD.creator_id IS DISTINCT FROM NEW.creator_id) "
                             "EXECUTE FUNCTION dataset_owner_follow()"),
}  # fmt: skip


def _value_indexes(which: str) -> None:
    bind = op.get_bind()
    for name, columns in _INDEXES[which].items():
        bind.exec_driver_sql(f"DROP INDEX ix_metadatavalue_{name}")
        bind.exec_driver_sql(f"CREATE INDEX ix_metadatavalue_{name} ON metadatavalue {columns}")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # 0011's key counts would read every value twice over, to change no count.
    bind.exec_driver_sql("ALTER TABLE metadatavalue DISABLE TRIGGER metadatakey_count_update")
    bind.exec_driver_sql(
        "UPDATE metadatavalue AS m SET owner_id = d.creator_id FROM dataset AS d "
        "WHERE d.id = m.dataset_id AND m.owner_id IS DISTINCT FROM d.creator_id"
    )
    bind.exec_driver_sql("ALTER TABLE metadatavalue ENABLE TRIGGER metadatakey_count_update")
    for name, body in FUNCTIONS.items():
        bind.exec_driver_sql(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body${body}$body$"
        )
    for name, (_, body) in TRIGGERS.items():
        bind.exec_driver_sql(f"CREATE TRIGGER {name} {body}")
    _value_indexes("after")

    bind.exec_driver_sql("ALTER TABLE dataset_text ADD COLUMN tokens tsvector")
    last = 0
    while rows := bind.exec_driver_sql(
        "SELECT rowid, body, owner FROM dataset_text WHERE rowid > %(last)s "
        f"ORDER BY rowid LIMIT {BATCH}",
        {"last": last},
    ).all():
        bind.exec_driver_sql(
            "UPDATE dataset_text AS t SET tokens = CAST(v.tokens AS tsvector) "
            "FROM unnest(%(ids)s::bigint[], %(tokens)s::text[]) AS v (rowid, tokens) "
            "WHERE t.rowid = v.rowid",
            {
                "ids": [row[0] for row in rows],
                "tokens": [
                    pg_words.vector(sqlite_words.tokens(body), owner) for _, body, owner in rows
                ],
            },
        )
        last = rows[-1][0]
    bind.exec_driver_sql("ALTER TABLE dataset_text ALTER COLUMN tokens SET NOT NULL")
    bind.exec_driver_sql("CREATE INDEX ix_dataset_text_tokens ON dataset_text USING gin (tokens)")
    bind.exec_driver_sql("DROP INDEX ix_dataset_text_body_trgm")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql(
        "CREATE INDEX ix_dataset_text_body_trgm ON dataset_text "
        "USING gin (lower(body) gin_trgm_ops)"
    )
    bind.exec_driver_sql("DROP INDEX ix_dataset_text_tokens")
    bind.exec_driver_sql("ALTER TABLE dataset_text DROP COLUMN tokens")
    _value_indexes("before")
    for name, (table, _) in TRIGGERS.items():
        bind.exec_driver_sql(f'DROP TRIGGER {name} ON "{table}"')
    for name in FUNCTIONS:
        bind.exec_driver_sql(f"DROP FUNCTION {name}()")
