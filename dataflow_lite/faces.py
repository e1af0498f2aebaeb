"""What the two HTTP faces (``api/`` and ``web/``) share: the request's runtime, and where each
answers.

Both faces hand the services the runtime that ``create_app`` built; they find it here, so that
neither imports the factory that imports them.
"""

from __future__ import annotations

from flask import current_app

from dataflow_lite.bootstrap import Runtime

#: app.extensions key of the runtime the app was built on.
RUNTIME = "dataflow_lite.runtime"
#: Where the API answers; everything else is the web pages'.
API_PATH = "/api/"
#: app.extensions key of a function that renders an error as a web page, or returns None.
PAGE_ERROR_HANDLER = "dataflow_lite.error_page"


def runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    rt: Runtime = current_app.extensions[RUNTIME]
    return rt
