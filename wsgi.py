"""The WSGI entry point for gunicorn: ``gunicorn wsgi:app``."""

from dataflow_lite.app import served_app

app = served_app()
