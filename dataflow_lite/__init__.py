"""dataflow-lite: a self-hosted DataFlow server that moves instrument data to storage."""

from __future__ import annotations

__version__ = "0.1.0"

from dataflow_lite.app import create_app  # noqa: E402

__all__ = ["create_app", "__version__"]
