"""Datasets: my datasets with search, the new-dataset wizard, a dataset's page, and its uploads."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, cast

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func
from sqlmodel import Session, col, select

from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.views import dataset_view, transfers
from dataflow_lite.services import user_settings
from dataflow_lite.store import catalog, metadata, search
from dataflow_lite.store.db import get_session
from dataflow_lite.store.models import DatasetFile, Instrument, MetadataField, Transfer
from dataflow_lite.web import wizard
from dataflow_lite.web.pages import current_user, login_required

bp = Blueprint("dataset_pages", __name__, template_folder="templates")

MAX_NAME = 1000
UNTITLED = catalog.UNTITLED_INSTRUMENT_NAME


@dataclass(frozen=True)
class Shown:
    """A metadata value as the dataset page shows it, with its field's unit."""

    text: str
    unit: str = ""


@dataclass(frozen=True)
class TreeRow:
    """One line of a dataset's file tree."""

    entry: DatasetFile
    depth: int
    path: str
    state: str | None
    error: str | None


def _page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and 0 < int(text) < 10**9 else 1


def _instruments(session: Session) -> Sequence[Instrument]:
    return session.exec(select(Instrument).order_by(col(Instrument.name))).all()


@bp.get("/datasets")
@login_required
def index():
    """My datasets (all of them for an admin), newest first, with search and paging."""
    session = get_session()
    query = request.args.get("q", "").strip()
    page = _page_number(request.args.get("page"))
    per_page = current_app.config["DATAFLOW_LITE"]["per_page"]
    found = search.search_datasets(session, current_user(), query, page, per_page)
    ids = [dataset.id for dataset in found.results]
    counts = dict(
        session.exec(  # type: ignore[arg-type]
            select(DatasetFile.dataset_id, func.count())
            .where(col(DatasetFile.dataset_id).in_(ids), col(DatasetFile.is_directory).is_(False))
            .group_by(col(DatasetFile.dataset_id))
        ).all()
    )
    instruments = {instrument.id: instrument.name for instrument in _instruments(session)}
    pages = max(1, -(-found.total // per_page))
    return render_template(
        "dataset_pages/index.html",
        found=found,
        query=query,
        page=page,
        pages=pages,
        counts=counts,
        instruments=instruments,
    )


@bp.route("/datasets/new", methods=["GET", "POST"])
@login_required
def new():
    """The wizard: choose an instrument, then fill in its metadata form and name the dataset."""
    session = get_session()
    choice = request.args.get("instrument", "")
    if not choice.isdigit() or int(choice) > catalog.MAX_ID:
        return render_template(
            "dataset_pages/choose_instrument.html", instruments=_instruments(session)
        )
    instrument_id = int(choice)
    instrument = catalog.get_instrument(session, instrument_id) if instrument_id else None
    fields = catalog.instrument_fields(session, instrument_id)
    if request.method == "GET":
        texts = wizard.persisted_texts(session, current_user(), instrument_id, fields)
        return _form(instrument, fields, "", texts, [], None)
    name = request.form.get("name", "").strip()
    submission = wizard.read_form(fields, request.form)
    if not name:
        error = DataflowError(400, "the dataset name is blank", {"name": "must not be blank"})
    elif len(name) > MAX_NAME:
        error = DataflowError(400, f"the dataset name is longer than {MAX_NAME} characters")
    elif submission.problems:
        error = DataflowError(400, "; ".join(submission.problems))
    else:
        error = None
    if error is None:
        try:
            endpoint = user_settings.destination_endpoint(session, current_user())
            dataset = catalog.create_dataset(
                session, current_user(), name, instrument_id, submission.values, endpoint
            )
            transfer = transfers().add(session, dataset, endpoint)
            session.commit()
        except DataflowError as rejected:
            session.rollback()
            error = rejected
    if error is not None:
        return _form(
            instrument, fields, name, submission.texts, submission.extras, error, status=400
        )
    transfers().wake(transfer.id)  # type: ignore[arg-type]
    flash(f"Dataset “{dataset.name}” is created: add its files.", "success")
    return redirect(url_for(".upload", dataset_id=dataset.id))


def _form(
    instrument: Instrument | None,
    fields: Sequence[MetadataField],
    name: str,
    texts: dict[str, str],
    extras: Sequence[wizard.ExtraRow],
    error: DataflowError | None,
    status: int = 200,
):
    given = cast(dict[str, Any], error.data["errors"]) if error else {}
    errors = {key: str(value) for key, value in given.items()}
    page = render_template(
        "dataset_pages/new.html",
        instrument=instrument,
        instrument_id=instrument.id if instrument else 0,
        instrument_name=instrument.name if instrument else UNTITLED,
        name=name,
        name_error=errors.get("name"),
        inputs=wizard.field_inputs(fields, texts, errors),
        extras=wizard.extra_rows(extras, errors),
        error=error.data["message"] if error else None,
        errors=errors,
        nesting_hint=wizard.NESTING_HINT,
    )
    return page, status


def _file_transfers(session: Session, dataset_id: int) -> dict[int, Transfer]:
    rows = session.exec(
        select(Transfer)
        .where(Transfer.dataset_id == dataset_id, Transfer.kind == "file")
        .order_by(col(Transfer.id))
    )
    return {row.file_id: row for row in rows if row.file_id is not None}


def file_tree(entries: Iterable[DatasetFile], latest: dict[int, Transfer]) -> list[TreeRow]:
    """The dataset's entries depth first, folders before files, each level by name."""
    children: dict[str, list[DatasetFile]] = defaultdict(list)
    for entry in entries:
        children[entry.relative_path].append(entry)
    rows: list[TreeRow] = []

    def walk(parent: str, depth: int) -> None:
        for entry in sorted(children[parent], key=lambda e: (not e.is_directory, e.name)):
            path = str(PurePosixPath(parent, entry.name))
            transfer = latest.get(entry.id)  # type: ignore[arg-type]
            rows.append(
                TreeRow(
                    entry,
                    depth,
                    path,
                    transfer.state if transfer else None,
                    transfer.last_error if transfer else None,
                )
            )
            if entry.is_directory:
                walk(path, depth + 1)

    walk("", 0)
    return rows


def shown_metadata(session: Session, dataset_id: int) -> dict[str, Any]:
    """The dataset's metadata nested by ``-``, each value with its field's unit."""
    units = {}
    values = catalog.dataset_values(session, dataset_id)
    for value in values:
        if value.metadata_field_id:
            metadata_field = session.get(MetadataField, value.metadata_field_id)
            units[value.id] = metadata_field.unit if metadata_field else ""
    return metadata.nest(
        (value.field_name, Shown(metadata.value_text(value.value), units.get(value.id, "")))
        for value in values
    )


@bp.get("/datasets/<int:dataset_id>")
@login_required
def show(dataset_id: int):
    """A dataset: its metadata, its file tree with transfer states, and where it landed."""
    session = get_session()
    dataset = catalog.get_dataset(session, current_user(), dataset_id)
    view = dataset_view(session, dataset)
    latest = _file_transfers(session, dataset_id)
    entries = catalog.dataset_files(session, dataset_id)
    return render_template(
        "dataset_pages/show.html",
        dataset=dataset,
        view=view,
        metadata=shown_metadata(session, dataset_id),
        tree=file_tree(entries, latest),
        total_size=sum(entry.file_length or 0 for entry in entries if not entry.is_directory),
        file_count=sum(1 for entry in entries if not entry.is_directory),
    )


@bp.get("/datasets/<int:dataset_id>/upload")
@login_required
def upload(dataset_id: int):
    """Add files and folders to a dataset, several at a time, with progress."""
    session = get_session()
    dataset = catalog.get_dataset(session, current_user(), dataset_id)
    file_count = session.exec(
        select(func.count())
        .select_from(DatasetFile)
        .where(DatasetFile.dataset_id == dataset_id, col(DatasetFile.is_directory).is_(False))
    ).one()
    return render_template("dataset_pages/upload.html", dataset=dataset, file_count=file_count)
