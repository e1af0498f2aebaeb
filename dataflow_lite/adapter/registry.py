"""How adapters are found (entry points) and instantiated per endpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import PurePosixPath
from typing import Any

from dataflow_lite.adapter.base import TransferAdapter
from dataflow_lite.adapter.values import AdapterContext
from dataflow_lite.settings import Setting

ENTRY_POINT_GROUP = "dataflow_lite.adapters"


def discover_adapters() -> dict[str, type[TransferAdapter]]:
    """Every installed adapter class by name, from the ``dataflow_lite.adapters`` entry points."""
    found: dict[str, type[TransferAdapter]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            adapter = entry_point.load()
        except Exception as error:
            raise ImportError(
                f"adapter plugin {entry_point.name!r} ({entry_point.value}) failed to load: {error}"
            ) from error
        if not (isinstance(adapter, type) and issubclass(adapter, TransferAdapter)):
            raise TypeError(f"entry point {entry_point.value} is not a TransferAdapter subclass")
        found[entry_point.name] = adapter
    return found


def adapter_settings(classes: dict[str, type[TransferAdapter]]) -> tuple[Setting, ...]:
    """Every adapter's own settings, named ``<adapter>_<name>`` in the configuration."""
    return tuple(
        replace(setting, name=f"{name}_{setting.name}")
        for name, adapter_class in sorted(classes.items())
        for setting in adapter_class.settings
    )


def adapter_key_files(classes: dict[str, type[TransferAdapter]]) -> list[str]:
    """The names of the key files the adapters keep beside the instance's (``key_files``)."""
    return [name for adapter_class in classes.values() for name in adapter_class.key_files]


class Adapters:
    """The installed adapters of one app, and adapter instances per endpoint."""

    def __init__(self, classes: dict[str, type[TransferAdapter]], context: AdapterContext):
        self.classes = classes
        self.context = context

    @property
    def names(self) -> list[str]:
        """The names of the installed adapters, sorted."""
        return sorted(self.classes)

    def get_class(self, name: str) -> type[TransferAdapter]:
        """The adapter class called ``name``, or a LookupError naming the installed ones."""
        try:
            return self.classes[name]
        except KeyError:
            raise LookupError(
                f"adapter {name!r} is not installed; installed: {', '.join(self.names) or 'none'}"
            ) from None

    def for_endpoint(self, adapter: str, options: dict[str, Any]) -> TransferAdapter:
        """An adapter instance for an endpoint of type ``adapter`` with ``options``."""
        adapter_class = self.get_class(adapter)
        prefix = adapter + "_"
        own = {
            name.removeprefix(prefix): value
            for name, value in self.context.settings.items()
            if name.startswith(prefix)
        }
        return adapter_class(options, replace(self.context, settings=own))

    def locate(self, endpoint: Any, target: PurePosixPath) -> str:
        """Where ``target`` is on ``endpoint`` (a row with ``adapter`` and ``options``), in words.

        An endpoint whose adapter is no longer installed still has a name to show.
        """
        return self.locator(endpoint)(target)

    def locator(self, endpoint: Any) -> Callable[[PurePosixPath], str]:
        """:meth:`locate` for many targets on one endpoint, its adapter made once."""

        def unknown(target: PurePosixPath) -> str:
            return f"{target} on {endpoint.name} (adapter {endpoint.adapter!r} is not installed)"

        try:
            adapter = self.for_endpoint(endpoint.adapter, endpoint.options)
        except LookupError:
            return unknown

        def located(target: PurePosixPath) -> str:
            try:
                return adapter.locate(target)
            except LookupError:
                return unknown(target)

        return located
