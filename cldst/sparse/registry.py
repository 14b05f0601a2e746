"""The drop and growth criteria by name: the registries `cldst.config` validates against.

Built-in criteria are entered as "module:function" references, resolved on first use, so the names
cost no torch import; `register_drop` / `register_growth` add a criterion (a notebook may), and
`Config.validate` asks the registry at validation time, so a criterion registered later is accepted:

    from cldst.sparse import register_growth

    @register_growth("my_growth")
    def my_growth(n, candidates, ctx): ...   # exactly n True, a subset of candidates (cldst.sparse.criteria)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from cldst.errors import ConfigError
from cldst.lazy import resolve

log = logging.getLogger(__name__)

DROP: dict[str, Callable | str] = {
    "magnitude": "cldst.sparse.criteria:magnitude_drop",
    "magnitude_threshold": "cldst.sparse.criteria:magnitude_threshold_drop",
}
GROWTH: dict[str, Callable | str] = {
    "random": "cldst.sparse.criteria:random_growth",
    "unfired": "cldst.sparse.criteria:unfired_growth",
    "gradient": "cldst.sparse.criteria:gradient_growth",
    "momentum": "cldst.sparse.criteria:momentum_growth",
}
# Other names of a criterion (the authors' code calls unfired growth "random_unfired").
GROWTH_ALIASES = {"random_unfired": "unfired"}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _register(registry: dict, kind: str, name: str) -> Callable:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{kind} name {name!r} must be an identifier (letters, digits, '_')")

    def decorator(fn: Callable) -> Callable:
        if name in registry and registry[name] is not fn:
            log.info("%s criterion %r replaced by %s", kind, name, getattr(fn, "__name__", fn))
        registry[name] = fn
        return fn

    return decorator


def register_drop(name: str) -> Callable:
    """Decorator adding a drop criterion under `name` (re-registering a name replaces it)."""
    return _register(DROP, "drop", name)


def register_growth(name: str) -> Callable:
    """Decorator adding a growth criterion under `name` (re-registering a name replaces it)."""
    return _register(GROWTH, "growth", name)


def check_name(kind: str, name: str) -> None:
    """ConfigError "growth 'x' is not one of: ..." unless `name` is registered (`kind`: drop | growth)."""
    registry = DROP if kind == "drop" else GROWTH
    if name not in registry:
        raise ConfigError(f"{kind} {name!r} is not one of: {', '.join(registry)}")


def _lookup(registry: dict, kind: str, name: str) -> Callable:
    check_name(kind, name)
    if isinstance(registry[name], str):
        registry[name] = resolve(registry[name])
    return registry[name]


def get_drop(name: str) -> Callable:
    return _lookup(DROP, "drop", name)


def get_growth(name: str) -> Callable:
    return _lookup(GROWTH, "growth", name)
