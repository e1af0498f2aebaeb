"""The catalog's tables (SQLModel over SQLite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import JSON, Column, Dialect, Index, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time in UTC, without microseconds (the wire shows whole seconds)."""
    return datetime.now(UTC).replace(microsecond=0)


class JSONText(TypeDecorator[Any]):
    """A JSON value kept as TEXT, exactly as written.

    SQLite gives a column declared ``JSON`` numeric affinity, which stores the JSON text ``2.0``
    as the integer 2: a float came back as an int. A TEXT column keeps the text as it is.
    """

    impl = Text
    cache_ok = True
    # None is bound as the JSON text null (as ``import`` writes it), not left as SQL NULL.
    should_evaluate_none = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        return json.dumps(value)  # None is JSON null, as SQLAlchemy's JSON type stores it

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        # A table created before this type (``value JSON``) hands back numbers SQLite converted.
        return json.loads(value) if isinstance(value, str) else value


class _Numbered(Protocol):
    id: int | None


def row_id(row: _Numbered) -> int:
    """The id of a row the database has numbered (loaded, or added and flushed).

    The tables declare ``id: int | None`` because a new row has no id until it is flushed; this
    is where code that needs the number says the row has one.
    """
    if row.id is None:
        raise ValueError(f"this {type(row).__name__} has no id yet: flush the session first")
    return row.id


class User(SQLModel, table=True):
    """A person who logs in and owns datasets."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True)
    name: str = ""
    is_admin: bool = False
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def display_name(self) -> str:
        """The full name, or the username when there is none (DataFlow's ``creator.name``)."""
        return self.name or self.username

    #: An argon2 hash for logging in to the web pages; None: no local password (API keys only).
    password_hash: str | None = None
    #: Kept in each web session cookie; raised by a logout or a new password, which ends every
    #: session that carries an older number (a copied cookie included).
    session_generation: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class ApiKey(SQLModel, table=True):
    """An API key: only the hash of its secret part is stored."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    secret_sha256: str
    name: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class Instrument(SQLModel, table=True):
    """An instrument whose datasets share a folder and, optionally, a metadata form."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    description: str = ""
    instrument_type: str | None = None


class MetadataField(SQLModel, table=True):
    """One field of an instrument's metadata form."""

    __table_args__ = (UniqueConstraint("instrument_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id", index=True, ondelete="CASCADE")
    name: str
    field_type: str = "string"
    required: bool = False
    choices: list[Any] | None = Field(default=None, sa_column=Column(JSON))
    unit: str = ""
    position: int = 0
    #: Pre-fill the value from the user's previous dataset on this instrument (web form).
    persist: bool = False


class LoginThrottle(SQLModel, table=True):
    """Failed web logins of one username or one address, counted over a time window."""

    key: str = Field(primary_key=True)  # "user:<username>@<ip>" or "address:<ip>"
    failures: int = 0
    window_start: datetime = Field(default_factory=utcnow)


class Endpoint(SQLModel, table=True):
    """A destination that files are transferred to, served by one adapter."""

    id: str = Field(primary_key=True)
    name: str = Field(unique=True)
    adapter: str
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    is_default: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class UserSetting(SQLModel, table=True):
    """One user setting, such as ``globus.destination_endpoint``."""

    user_id: int = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    key: str = Field(primary_key=True)
    value: str


class Dataset(SQLModel, table=True):
    """A measurement: a named folder of files at one endpoint, with its metadata."""

    __table_args__ = (
        UniqueConstraint("endpoint_id", "folder"),
        # A user's datasets, or an instrument's, walked newest first (revision 0006).
        Index("ix_dataset_creator_created", "creator_id", "created_at"),
        Index("ix_dataset_instrument_created", "instrument_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str
    creator_id: int = Field(foreign_key="user.id", index=True)
    instrument_id: int | None = Field(default=None, foreign_key="instrument.id", index=True)
    endpoint_id: str = Field(foreign_key="endpoint.id")
    folder: str
    created_at: datetime = Field(default_factory=utcnow, index=True)


class MetadataValue(SQLModel, table=True):
    """One flattened metadata value of a dataset, stored with its JSON type.

    Revision 0006 also indexes numbers by value and text by its lowercase (expression indexes
    that no model describes: ``dataflow_lite.store.sqlite_search`` queries them); on SQLite they
    end with the dataset id since 0010. Values by key and dataset: on SQLite
    ``ix_metadatavalue_key_value`` (0012), on PostgreSQL ``ix_metadatavalue_key`` (0013).
    The typed indexes list each owner's values apart (SQLite 0014, PostgreSQL 0015).
    """

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True, ondelete="CASCADE")
    field_name: str
    value: Any = Field(sa_column=Column(JSONText))
    metadata_field_id: int | None = Field(default=None, foreign_key="metadatafield.id")
    #: The dataset's creator. Writers give it; triggers set it from the dataset whenever a
    #: value is written without it (SQLite 0014, PostgreSQL 0015).
    owner_id: int | None = None


class DatasetFile(SQLModel, table=True):
    """A file or a directory of a dataset, at ``relative_path/name`` under the dataset folder."""

    __table_args__ = (UniqueConstraint("dataset_id", "relative_path", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True, ondelete="CASCADE")
    name: str = Field(index=True)
    relative_path: str = ""
    is_directory: bool = False
    file_length: int | None = None
    file_type: str | None = None
    sha256: str | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)


class EndpointCredential(SQLModel, table=True):
    """A user's credentials for one endpoint, from activation; the secret is encrypted at rest."""

    user_id: int = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    endpoint_id: str = Field(foreign_key="endpoint.id", primary_key=True, ondelete="CASCADE")
    username: str
    secret_encrypted: str
    created_at: datetime = Field(default_factory=utcnow)


class Transfer(SQLModel, table=True):
    """Moving a file (or a dataset's metadata.json) to its endpoint: the queue's durable record."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = "file"  # "file" or "metadata"
    dataset_id: int = Field(foreign_key="dataset.id", index=True, ondelete="CASCADE")
    file_id: int | None = Field(default=None, foreign_key="datasetfile.id", ondelete="CASCADE")
    endpoint_id: str = Field(foreign_key="endpoint.id")
    user_id: int = Field(foreign_key="user.id")
    adapter: str
    state: str = Field(default="queued", index=True)
    attempts: int = 0
    last_error: str | None = None
    permanent: bool = False
    bytes_moved: int = 0
    staged_path: str | None = None
    #: The host whose staging folder holds the file (its workers alone run the transfer).
    staged_on: str | None = None
    handle: str | None = None
    memo: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    next_attempt_at: datetime = Field(default_factory=utcnow)
    lease_until: datetime | None = None
    #: Which claim (one worker's run) may write the transfer's progress; a newer claim voids it.
    claim: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class AuditEvent(SQLModel, table=True):
    """One change made through the services: who, how, what; append-only and hash-chained.

    ``sha256`` covers the row's own fields and ``prev_sha256`` (the previous row's ``sha256``),
    so altering or removing a row breaks the chain after it (``services.audit.verify``).
    """

    # AUTOINCREMENT: SQLite never reuses an id, so removing the newest rows leaves a gap that
    # the next row (and the sequence) shows.
    __table_args__ = (
        Index("ix_auditevent_object", "object_type", "object_id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    # No foreign key: removing a user must neither cascade here nor rewrite (and so break) rows.
    user_id: int | None = Field(default=None, index=True)
    #: Copied from the user, so the trail still names someone who was removed; None: the system.
    username: str | None = Field(default=None, index=True)
    #: ``api-key 12``, ``web-session``, ``cli``, ``worker``.
    via: str
    address: str | None = None
    #: The policy action, such as ``dataset.create``.
    action: str
    object_type: str
    object_id: str | None = None
    #: What changed (``{"field": {"old": .., "new": ..}}`` for updates); secrets are masked.
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_sha256: str
    sha256: str


class ResumableUpload(SQLModel, table=True):
    """A file arriving in pieces (tus): where it goes, how far it got, until when it may go on.

    Its bytes are in the staging area under ``layout.resumable_staged_name(id)``; ``offset``
    counts the bytes there that are durable (synced) and so may be resumed from. The row is
    made before any byte is sent, so its path counts as taken; once the last byte arrived the
    file is catalogued (``file_id``) and the row stays, complete, until it expires, so that a
    client that missed the last answer learns the upload is done.
    """

    __table_args__ = (UniqueConstraint("dataset_id", "relative_path", "name"),)

    #: Random and unguessable: the last part of the upload's URL.
    id: str = Field(primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    dataset_id: int = Field(foreign_key="dataset.id", index=True, ondelete="CASCADE")
    relative_path: str = ""
    name: str
    content_type: str = ""
    length: int
    offset: int = 0
    #: The client's Upload-Metadata, as sent, to be shown back by HEAD.
    upload_metadata: str = ""
    file_id: int | None = Field(default=None, foreign_key="datasetfile.id", ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class MetadataKey(SQLModel, table=True):
    """How many of a user's datasets have a flattened key with values of one JSON type.

    Kept by triggers on ``metadatavalue`` (revision 0006), so any INSERT keeps it right.
    """

    creator_id: int = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    field_name: str = Field(primary_key=True)
    #: ``json_type`` of the values: text, integer, real, true, false, null, array.
    value_type: str = Field(primary_key=True)
    datasets: int = 0


class InstanceKeys(SQLModel, table=True):
    """The fingerprint of the keys the catalog was first opened with: every host must match it.

    Hosts sharing one database must share ``secret_key`` and ``password.key``; a host with other
    keys would sign API keys the others reject and fail to decrypt stored passwords.
    """

    id: int = Field(default=1, primary_key=True)  # one row
    fingerprint: str
    host: str  # the host that recorded it, named in the error a mismatching host gets
    recorded_at: datetime = Field(default_factory=utcnow)


class Host(SQLModel, table=True):
    """A host serving the catalog, as its transfer worker last checked in (every sweep)."""

    name: str = Field(primary_key=True)  # its host_name
    #: The machine and instance folder that checked in under the name: one each.
    place: str
    seen_at: datetime = Field(default_factory=utcnow)
