"""``dataset-file-upload`` and ``dataset-files/search``: a dataset's files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request
from flask.views import MethodView
from werkzeug.exceptions import RequestEntityTooLarge

from dataflow_lite.api import Blueprint
from dataflow_lite.api.auth import current_identity
from dataflow_lite.api.datasets import page_size
from dataflow_lite.api.errors import DataflowError
from dataflow_lite.api.schemas import (
    FileSchema,
    FileSearchArgs,
    UploadedFileSchema,
    search_page_schema,
)
from dataflow_lite.api.uploads import Limits, UploadRefused, stage_upload
from dataflow_lite.faces import runtime
from dataflow_lite.services import dataset_files, searches

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


def dataset_id_field(fields: Mapping[str, str]) -> int:
    """The form field ``dataset_id`` as an integer, or a 400 naming what is wrong with it."""
    value = fields.get("dataset_id", "").strip()
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
    def post(self) -> Any:
        """Upload one file into a dataset, at ``relative_path`` below its root.

        The body is streamed to the staging area (never held in memory); the answer comes at
        once, and the transfer queue moves the file to the dataset's endpoint and verifies it
        there (``transfer_id``, ``transfer_state``). 409 if the path is taken.
        """
        rt = runtime()
        settings = rt.settings
        try:
            upload = stage_upload(
                request.stream,
                request.content_type,
                rt.adapters.context.staging_dir,
                Limits(
                    field_bytes=settings["max_form_field_bytes"],
                    parts=settings["max_upload_parts"],
                    header_bytes=settings["max_part_header_bytes"],
                ),
            )
        except UploadRefused as error:
            raise DataflowError(error.status, str(error)) from error
        except RequestEntityTooLarge as error:
            limit = settings["max_upload_bytes"]
            raise DataflowError(
                413, f"the upload is larger than this server's limit of {limit} bytes"
            ) from error
        try:
            assert upload.path is not None  # stage_upload refuses a body without a file
            staged = dataset_files.StagedFile(
                upload.path, upload.filename or "", upload.size, upload.sha256, upload.content_type
            )
            return dataset_files.add_file(
                rt,
                current_identity(),
                dataset_id_field(upload.fields),
                upload.fields.get("relative_path", ""),
                staged,
            )
        except BaseException:
            # Anything refused leaves nothing behind; once added, the queue owns the file.
            upload.discard()
            raise
        finally:
            upload.release()  # committed or removed: from now on a sweep may judge it


@blp.route("/dataset-files/search")
class DatasetFileSearch(MethodView):
    @blp.arguments(FileSearchArgs, location="query")
    @blp.response(200, search_page_schema(FileSchema))
    def get(self, args: dict[str, Any]) -> Any:
        """Files whose name contains ``q`` (or made on ``q``'s date), optionally in one dataset."""
        return searches.search_files(
            runtime(),
            current_identity(),
            args["q"],
            args["dataset_id"],
            args["page"],
            page_size(args["per_page"]),
            args["after"],
        )
