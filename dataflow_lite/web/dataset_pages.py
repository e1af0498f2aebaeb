"""Datasets: my datasets with search, the new-dataset wizard, a dataset's page with downloads,
and its uploads."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from dataflow_lite.adapter import QUEUED, RUNNING, VERIFYING
from dataflow_lite.faces import runtime
from dataflow_lite.services import datasets, downloads, instruments, searches
from dataflow_lite.services.errors import Invalid
from dataflow_lite.store import metadata, search
from dataflow_lite.store.catalog import MAX_ID
from dataflow_lite.store.models import Instrument, MetadataField
from dataflow_lite.store.query import SYNTAX
from dataflow_lite.web import wizard
from dataflow_lite.web.pages import current_identity, field_errors, login_required

bp = Blueprint("dataset_pages", __name__, template_folder="templates")


@dataclass(frozen=True)
class Shown:
    """A metadata value as the dataset page shows it, with its field's unit."""

    text: str
    unit: str = ""


@dataclass(frozen=True)
class TreeRow:
    """One line of a dataset's file tree; ``entry`` is one of ``dataset_files``."""

    entry: Mapping[str, Any]
    depth: int
    path: str
    state: str | None
    error: str | None


def _whole_number(text: str | None) -> int | None:
    """``text`` as a whole number if it is one in ASCII digits ("²" is a digit to isdigit)."""
    return int(text) if text and text.isascii() and text.isdigit() else None


def _page_number(text: str | None) -> int:
    number = _whole_number(text)
    return number if number is not None and 0 < number < 10**9 else 1


def _file_count(dataset: Mapping[str, Any]) -> int:
    return sum(1 for entry in dataset["dataset_files"] if not entry["is_directory"])


#: The facets beside the results (counts that narrow the search when clicked), and how many each.
FACET_FIELDS = ("instrument", "created")
FACET_VALUES = 5


@bp.get("/datasets")
@login_required
def index() -> ResponseReturnValue:
    """My datasets (all of them for an admin), newest first, with search and paging."""
    query = request.args.get("q", "").strip()
    page = _page_number(request.args.get("page"))
    per_page = runtime().settings["per_page"]
    refused: Invalid | None = None
    try:
        found = searches.search_datasets(runtime(), current_identity(), query, page, per_page)
        facets = searches.facets(
            runtime(), current_identity(), query, FACET_FIELDS, FACET_VALUES
        ) if found.results else None  # fmt: skip
    except Invalid as error:  # a malformed search, or a page past the window: said by the box
        found, facets, refused = search.Page(total=0, has_more=False, results=[]), None, error
    return render_template(
        "dataset_pages/index.html",
        found=found,
        query=query,
        page=page,
        pages=max(1, -(-found.total // per_page)),
        counts={dataset["id"]: _file_count(dataset) for dataset in found.results},
        refused=refused,
        facets=facets,
        syntax=SYNTAX,
    ), (400 if refused else 200)


@bp.route("/datasets/new", methods=["GET", "POST"])
@login_required
def new() -> ResponseReturnValue:
    """The wizard: choose an instrument, then fill in its metadata form and name the dataset."""
    choice = _whole_number(request.args.get("instrument", ""))
    if choice is None or choice > MAX_ID:
        forms = instruments.list_instruments(runtime(), current_identity())
        rows = sorted((form.instrument for form in forms), key=lambda row: row.name)
        return render_template("dataset_pages/choose_instrument.html", instruments=rows)
    form = instruments.get_instrument(runtime(), current_identity(), choice)
    previous = wizard.texts_of(datasets.persisted_values(runtime(), current_identity(), choice))
    if request.method == "GET":
        return _form(form.instrument, form.fields, "", previous, [], previous)
    name = request.form.get("name", "").strip()
    submission = wizard.read_form(form.fields, request.form)
    try:
        if submission.problems:
            raise Invalid("; ".join(submission.problems))
        dataset = datasets.create_dataset(
            runtime(), current_identity(), name, form.instrument.id, submission.values
        )
    except Invalid as refused:
        return _form(
            form.instrument,
            form.fields,
            name,
            submission.texts,
            submission.extras,
            previous,
            refused,
        )
    flash(f"Dataset “{dataset['name']}” is created: add its files.", "success")
    return redirect(url_for(".upload", dataset_id=dataset["id"]))


def _form(
    instrument: Instrument,
    fields: Sequence[MetadataField],
    name: str,
    texts: dict[str, str],
    extras: Sequence[wizard.ExtraRow],
    previous: dict[str, str],
    refused: Invalid | None = None,
) -> ResponseReturnValue:
    """The form, with each refusal's message once: beside its field, or (with no field to
    stand by) in the notice above, which links to the marked fields."""
    errors = field_errors(refused)
    inputs = wizard.field_inputs(fields, texts, errors, previous)
    by_field = {item.field.name for item in inputs}
    rows = wizard.extra_rows(extras, {k: v for k, v in errors.items() if k not in by_field})
    marked = [("Title", "name")] if errors.get("name") else []
    marked += [(item.field.name, item.name) for item in inputs if item.error]
    marked += [
        (row.name or "a row", f"extra-value-{index}")
        for index, row in enumerate(rows, start=1)
        if row.error
    ]
    placed = {"name"} | by_field | {row.name for row in rows if row.error}
    page = render_template(
        "dataset_pages/new.html",
        instrument=instrument,
        instrument_id=instrument.id,
        instrument_name=instrument.name,
        name=name,
        name_error=errors.get("name"),
        inputs=inputs,
        extras=rows,
        error=refused.message if refused else None,
        marked=marked,
        unplaced={key: value for key, value in errors.items() if key not in placed},
        nesting_hint=wizard.NESTING_HINT,
    )
    return page, 400 if refused else 200


def file_tree(entries: Iterable[Mapping[str, Any]]) -> list[TreeRow]:
    """The dataset's entries depth first, folders before files, each level by name."""
    children: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for entry in entries:
        children[entry["relative_path"]].append(entry)
    rows: list[TreeRow] = []

    def walk(parent: str, depth: int) -> None:
        ordered = sorted(children[parent], key=lambda e: (not e["is_directory"], e["name"]))
        for entry in ordered:
            path = str(PurePosixPath(parent, entry["name"]))
            rows.append(
                TreeRow(entry, depth, path, entry["transfer_state"], entry["transfer_error"])
            )
            if entry["is_directory"]:
                walk(path, depth + 1)

    walk("", 0)
    return rows


def shown_metadata(values: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The dataset's metadata nested by ``-``, each value with its field's unit."""
    return metadata.nest(
        (
            value["field_name"],
            Shown(
                metadata.value_text(value["value"]),
                value["metadata_field"].unit if value["metadata_field"] else "",
            ),
        )
        for value in values
    )


@bp.get("/datasets/<int:dataset_id>")
@login_required
def show(dataset_id: int) -> ResponseReturnValue:
    """A dataset: its metadata, its file tree with transfer states, and where it landed."""
    dataset = datasets.get_dataset(runtime(), current_identity(), dataset_id)
    files = [entry for entry in dataset["dataset_files"] if not entry["is_directory"]]
    return render_template(
        "dataset_pages/show.html",
        dataset=dataset,
        metadata=shown_metadata(dataset["metadata_field_values"]),
        tree=file_tree(dataset["dataset_files"]),
        total_size=sum(entry["file_length"] or 0 for entry in files),
        file_count=len(files),
        # The page's script redraws the file list while any transfer may still move.
        moving=any(entry["transfer_state"] in (QUEUED, RUNNING, VERIFYING) for entry in files),
    )


@bp.get("/datasets/<int:dataset_id>/files/<int:file_id>/download")
@login_required
def download(dataset_id: int, file_id: int) -> ResponseReturnValue:
    """One of the dataset's files, streamed from its destination as an attachment.

    A ``Range`` request gets the part it asks for (206), so an interrupted download of a large
    file resumes (``curl -C -``, a browser's resume); the verified sha256 is the ETag that
    ``If-Range`` compares, so a resume never splices two versions of a file.
    """
    found = downloads.open_download(runtime(), current_identity(), dataset_id, file_id)
    # Never shown inline: an uploaded page or script must not run as this server's.
    response = send_file(
        found.stream,
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=found.name,
        conditional=False,
    )
    response.content_length = found.size
    response.headers["Cache-Control"] = "private, no-store"
    if found.sha256:
        response.set_etag(found.sha256)
    try:
        return response.make_conditional(request, accept_ranges=True, complete_length=found.size)
    except HTTPException:  # a range past the end (416): the file is not sent, so close it now
        response.close()
        raise


@bp.get("/datasets/<int:dataset_id>/upload")
@login_required
def upload(dataset_id: int) -> ResponseReturnValue:
    """Add files and folders to a dataset, several at a time, with progress."""
    dataset = datasets.get_dataset(runtime(), current_identity(), dataset_id)
    return render_template(
        "dataset_pages/upload.html", dataset=dataset, file_count=_file_count(dataset)
    )
