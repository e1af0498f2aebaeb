"""``dataset-file-upload`` and ``dataset-files/search``: a dataset's files."""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView
from werkzeug.exceptions import RequestEntityTooLarge

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_user
from dataflow_lite.api.datasets import page_size
from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.schemas import (
    FileSchema,
    FileSearchArgs,
    UploadedFileSchema,
    search_page_schema,
)
from dataflow_lite.api.uploads import MalformedUpload, StagedUpload, stage_upload
from dataflow_lite.api.views import endpoint_adapter, transfers
from dataflow_lite.store import catalog, layout, search
from dataflow_lite.store.db import get_session

blp = Blueprint("dataset_files", __name__, description="Upload and find a dataset's files.")

UPLOAD_FORM = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "dataset_id"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "dataset_id": {"type": "integer"},
                    "relative_path": {
                        "type": "string",
                        "description": "folder below the dataset's root, such as foo/bar",
                    },
                    "transport": {
                        "type": "string",
                        "description": "ignored: the user's transport.protocol setting decides",
                    },
                },
            }
        }
    }
}


def _dataset_id(upload: StagedUpload) -> int:
    value = upload.fields.get("dataset_id", "").strip()
    if not value:
        raise DataflowError(
            400, "dataset_id is required", {"dataset_id": ["Missing data for required field."]}
        )
    try:
        return int(value)
    except ValueError:
        raise DataflowError(
            400, f"dataset_id {value!r} is not an integer", {"dataset_id": ["Not a valid integer."]}
        ) from None


@blp.route("/dataset-file-upload")
class DatasetFileUpload(MethodView):
    @blp.doc(requestBody=UPLOAD_FORM)
    @blp.response(201, UploadedFileSchema)
    def post(self):
        """Upload one file into a dataset, at ``relative_path`` below its root.

        The body is streamed to the staging area (never held in memory); the answer comes at
        once, and the transfer queue moves the file to the dataset's endpoint and verifies it
        there (``transfer_id``, ``transfer_state``). 409 if the path is taken.
        """
        settings = current_app.config["DATAFLOW_LITE"]
        staging = current_app.extensions["dataflow_lite.adapters"].context.staging_dir
        try:
            upload = stage_upload(
                request.stream, request.content_type, staging, settings["max_form_field_bytes"]
            )
        except MalformedUpload as error:
            raise DataflowError(400, str(error)) from error
        except RequestEntityTooLarge as error:
            limit = settings["max_upload_bytes"]
            raise DataflowError(
                413, f"the upload is larger than this server's limit of {limit} bytes"
            ) from error
        try:
            session = get_session()
            dataset = catalog.get_dataset(session, current_user(), _dataset_id(upload))
            try:
                relative = layout.check_relative_path(upload.fields.get("relative_path", ""))
            except layout.UnsafePath as error:
                raise DataflowError(400, str(error), {"relative_path": [str(error)]}) from error
            row = catalog.add_file(session, dataset, relative, upload)
            endpoint, adapter = endpoint_adapter(session, dataset.endpoint_id)
            transfer = transfers().add(session, dataset, endpoint, row, upload.path)
            session.commit()
        except BaseException:
            upload.discard()
            raise
        # The queue owns the staged file now: it is deleted once the destination verified it.
        transfers().wake(transfer.id)  # type: ignore[arg-type]
        session.refresh(transfer)
        target = layout.file_target(dataset.folder, relative, row.name)
        return {
            **row.model_dump(),
            "transport": endpoint.adapter,
            "destination": adapter.locate(target),
            "transfer_id": transfer.id,
            "transfer_state": transfer.state,
        }


@blp.route("/dataset-files/search")
class DatasetFileSearch(MethodView):
    @blp.arguments(FileSearchArgs, location="query")
    @blp.response(200, search_page_schema(FileSchema))
    def get(self, args):
        """Files whose name contains ``q`` (or made on ``q``'s date), optionally in one dataset."""
        session = get_session()
        user = current_user()
        if args["dataset_id"] is not None:
            catalog.get_dataset(session, user, args["dataset_id"])
        found = search.search_files(
            session, user, args["q"], args["dataset_id"], args["page"], page_size(args["per_page"])
        )
        return {"total": found.total, "has_more": found.has_more, "results": found.results}
