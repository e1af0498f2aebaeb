"""The WSGI entry point for gunicorn: ``gunicorn wsgi:app``."""

from dataflow_lite import create_app

app = create_app()
