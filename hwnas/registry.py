"""The registry shape shared by every pluggable kind (spaces, proxies, decompositions, latency backends, profile
sources): a key → entry map filled by a decorator in each module of one package, whose modules are imported
when entries are asked for (a module already imported costs a dictionary look-up), so that adding one is one
new file in that package."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable


class Registry:
    def __init__(self, package: str):
        self.package = package
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable:
        """Decorator: register the decorated object under ``name``."""
        def wrap(entry):
            self._entries[name] = entry
            return entry

        return wrap

    def _load(self) -> None:
        for module in pkgutil.iter_modules(importlib.import_module(self.package).__path__):
            importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> Any | None:
        """The entry registered under ``name``, or None."""
        self._load()
        return self._entries.get(name)
