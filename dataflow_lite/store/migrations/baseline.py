"""The catalog's tables as release 7b9c32f created them, frozen for the first two revisions.

The models in :mod:`dataflow_lite.store.models` move on; these definitions never change, so
revision ``0001_baseline`` always creates the same schema, and ``0002_constraints_added_later``
can compare an older database with it. Columns and constraints are listed in the order
SQLModel's ``create_all`` emitted them, so the ``CREATE TABLE`` text matches the release's.
"""

from __future__ import annotations

import sqlalchemy as sa

SEARCH_TABLE = "dataset_text"
#: How FTS5 makes the full-text table's tokens (``sqlite_words`` asks it the same way).
TOKENIZER = "unicode61 remove_diacritics 2"
SEARCH_TABLE_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {SEARCH_TABLE} USING fts5(body, tokenize = '{TOKENIZER}')"
)
#: On PostgreSQL the same rows (``rowid`` the dataset's id, ``body`` its words) in a plain table,
#: so the code that writes them is the same on both; how it is searched is the search module's.
SEARCH_TABLE_POSTGRESQL_DDL = (
    f"CREATE TABLE IF NOT EXISTS {SEARCH_TABLE} (rowid BIGINT PRIMARY KEY, body TEXT NOT NULL)"
)


def create_search_table(bind: sa.Connection) -> None:
    """Create the full-text table of the database's kind (FTS5 on SQLite), if it is missing."""
    sqlite = bind.dialect.name == "sqlite"
    bind.exec_driver_sql(SEARCH_TABLE_DDL if sqlite else SEARCH_TABLE_POSTGRESQL_DDL)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _text(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(), nullable=nullable)


def _when(name: str, nullable: bool = False) -> sa.Column:
    # With a time zone, as the models have it: DATETIME on SQLite either way, and TIMESTAMP WITH
    # TIME ZONE on PostgreSQL (where no catalog was made before this line).
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _flag(name: str) -> sa.Column:
    return sa.Column(name, sa.Boolean(), nullable=False)


def _number(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _parent(column: str, target: str, cascade: bool = False) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [target], ondelete="CASCADE" if cascade else None)


def metadata() -> sa.MetaData:
    """A fresh MetaData holding the tables and indexes of release 7b9c32f."""
    meta = sa.MetaData()
    sa.Table(
        "user", meta,
        _id(), _text("username"), _text("name"), _flag("is_admin"), _flag("is_active"),
        _when("created_at"), _text("password_hash", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_user_username", "username", unique=True),
    )  # fmt: skip
    sa.Table(
        "instrument", meta,
        _id(), _text("name"), _text("description"), _text("instrument_type", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )  # fmt: skip
    sa.Table(
        "loginthrottle", meta,
        _text("key"), _number("failures"), _when("window_start"),
        sa.PrimaryKeyConstraint("key"),
    )  # fmt: skip
    sa.Table(
        "endpoint", meta,
        sa.Column("id", sa.String(), nullable=False), _text("name"), _text("adapter"),
        sa.Column("options", sa.JSON(), nullable=False), _flag("is_default"),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )  # fmt: skip
    sa.Table(
        "apikey", meta,
        _id(), _number("user_id"), _text("secret_sha256"), _text("name"), _when("created_at"),
        _when("expires_at", True), _when("revoked_at", True), _when("last_used_at", True),
        sa.PrimaryKeyConstraint("id"),
        _parent("user_id", "user.id", cascade=True),
        sa.Index("ix_apikey_user_id", "user_id"),
    )  # fmt: skip
    sa.Table(
        "metadatafield", meta,
        _id(), _number("instrument_id"), _text("name"), _text("field_type"), _flag("required"),
        sa.Column("choices", sa.JSON(), nullable=True), _text("unit"), _number("position"),
        _flag("persist"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instrument_id", "name"),
        _parent("instrument_id", "instrument.id", cascade=True),
        sa.Index("ix_metadatafield_instrument_id", "instrument_id"),
    )  # fmt: skip
    sa.Table(
        "usersetting", meta,
        _number("user_id"), _text("key"), _text("value"),
        sa.PrimaryKeyConstraint("user_id", "key"),
        _parent("user_id", "user.id", cascade=True),
    )  # fmt: skip
    sa.Table(
        "dataset", meta,
        _id(), _text("name"), _number("creator_id"), _number("instrument_id", True),
        _text("endpoint_id"), _text("folder"), _when("created_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("endpoint_id", "folder"),
        _parent("creator_id", "user.id"),
        _parent("instrument_id", "instrument.id"),
        _parent("endpoint_id", "endpoint.id"),
        sa.Index("ix_dataset_created_at", "created_at"),
        sa.Index("ix_dataset_instrument_id", "instrument_id"),
        sa.Index("ix_dataset_creator_id", "creator_id"),
    )  # fmt: skip
    sa.Table(
        "endpointcredential", meta,
        _number("user_id"), _text("endpoint_id"), _text("username"), _text("secret_encrypted"),
        _when("created_at"),
        sa.PrimaryKeyConstraint("user_id", "endpoint_id"),
        _parent("user_id", "user.id", cascade=True),
        _parent("endpoint_id", "endpoint.id", cascade=True),
    )  # fmt: skip
    sa.Table(
        "metadatavalue", meta,
        _id(), _number("dataset_id"), _text("field_name"),
        sa.Column("value", sa.JSON(), nullable=True), _number("metadata_field_id", True),
        sa.PrimaryKeyConstraint("id"),
        _parent("dataset_id", "dataset.id", cascade=True),
        _parent("metadata_field_id", "metadatafield.id"),
        sa.Index("ix_metadatavalue_dataset_id", "dataset_id"),
    )  # fmt: skip
    sa.Table(
        "datasetfile", meta,
        _id(), _number("dataset_id"), _text("name"), _text("relative_path"),
        _flag("is_directory"), _number("file_length", True), _text("file_type", True),
        _text("sha256", True), _when("created_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "relative_path", "name"),
        _parent("dataset_id", "dataset.id", cascade=True),
        sa.Index("ix_datasetfile_name", "name"),
        sa.Index("ix_datasetfile_dataset_id", "dataset_id"),
    )  # fmt: skip
    sa.Table(
        "transfer", meta,
        _id(), _text("kind"), _number("dataset_id"), _number("file_id", True),
        _text("endpoint_id"), _number("user_id"), _text("adapter"), _text("state"),
        _number("attempts"), _text("last_error", True), _flag("permanent"),
        _number("bytes_moved"), _text("staged_path", True), _text("handle", True),
        sa.Column("memo", sa.JSON(), nullable=False), _when("next_attempt_at"),
        _when("lease_until", True), _text("claim", True), _when("created_at"),
        _when("updated_at"), _when("finished_at", True),
        sa.PrimaryKeyConstraint("id"),
        _parent("dataset_id", "dataset.id", cascade=True),
        _parent("file_id", "datasetfile.id", cascade=True),
        _parent("endpoint_id", "endpoint.id"),
        _parent("user_id", "user.id"),
        sa.Index("ix_transfer_dataset_id", "dataset_id"),
        sa.Index("ix_transfer_state", "state"),
    )  # fmt: skip
    return meta
