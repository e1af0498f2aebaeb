"""How a long use case (an import, a rebuild of the search rows) reports how far it got: the
CLI passes a progress bar (``cli.catalog.Bar``), everyone else nothing."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Where a long use case reports how far it got (a progress bar, or nothing)."""

    def phase(self, name: str, total: int | None) -> None:
        """A new phase (``checking``, ``loading``) of ``total`` steps begins."""

    def advance(self, steps: int) -> None:
        """``steps`` more are done."""


class NoProgress:
    """Progress that nobody watches."""

    def phase(self, name: str, total: int | None) -> None:
        """Nothing to show."""

    def advance(self, steps: int) -> None:
        """Nothing to show."""
