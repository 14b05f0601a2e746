"""Lazy package exports (PEP 562): names resolve to their module on first use.

The packages' __init__ modules hold only the names of their choices (architectures, datasets, drop and
growth criteria, ...), which `cldst.config` validates against. Importing a package therefore costs no
torch or pandas import, so `cldst --help` and a one-line config error answer at once; the classes and
functions themselves load when first used (`from cldst.models import build_model` works as before).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`: name -> the submodule (relative, e.g. ".build") defining it.
    The mapping stays readable as `package.LAZY_EXPORTS` (tests/test_imports.py follows it)."""
    sys.modules[package].LAZY_EXPORTS = dict(where)  # the package is being imported: it is in sys.modules

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(importlib.import_module(package), name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*where, *vars(importlib.import_module(package))})

    return __getattr__, __dir__


def resolve(reference: str) -> object:
    """"package.module:attribute" -> the attribute (imports the module)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
