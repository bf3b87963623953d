"""Planted faults: a reference node that breaks named requirements on purpose.

The conformance suite is measured by the faults it catches (issue 6, the kill matrix). A fault
is switched on only by name (`cpin node --fault NAME`, `NodeConfig.faults`) and is otherwise
never active: the node's own code holds no fault logic, only the seam below.

    Fault(name, breaks, summary, install)      registered with @fault(...)
    install(site: FaultSite) -> None           changes ONE node, never module state:
        site.node                                  its services (security, federation, store)
        site.wrap_handler(op, wrap)                replace an operation's handler
        site.wrap_app(wrap)                        wrap the whole ASGI app (transport faults)

One module per conformance class holds its faults; `catalogue()` imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reference_impl.calls import Handler

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from reference_impl.node import Node

__all__ = ["FAULTS", "Fault", "FaultSite", "UnknownFault", "catalogue", "fault", "install"]


class UnknownFault(Exception):
    """A fault name that the catalogue does not hold."""


@dataclass
class FaultSite:
    """What a fault may change: one node's services, its handlers and its app."""

    node: Node
    handlers: dict[str, Handler]
    app_wrappers: list[Callable[[ASGIApp], ASGIApp]] = field(default_factory=list)

    def wrap_handler(self, operation_id: str, wrap: Callable[[Handler], Handler]) -> None:
        if operation_id in self.handlers:  # an operation the role does not serve stays absent
            self.handlers[operation_id] = wrap(self.handlers[operation_id])

    def wrap_app(self, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        self.app_wrappers.append(wrap)


@dataclass(frozen=True)
class Fault:
    name: str
    breaks: tuple[str, ...]
    summary: str
    install: Callable[[FaultSite], None]
    roles: tuple[str, ...] = ("national", "regional", "industry")


FAULTS: dict[str, Fault] = {}


def fault(
    name: str, breaks: Iterable[str], summary: str, roles: Iterable[str] | None = None
) -> Callable[[Callable[[FaultSite], None]], Callable[[FaultSite], None]]:
    """Register a fault: `breaks` names the requirement ids the suite must then fail."""

    def register(install: Callable[[FaultSite], None]) -> Callable[[FaultSite], None]:
        if name in FAULTS:
            raise RuntimeError(f"fault {name} is defined twice")
        extra = {"roles": tuple(roles)} if roles is not None else {}
        FAULTS[name] = Fault(name, tuple(breaks), summary, install, **extra)
        return install

    return register


def catalogue() -> dict[str, Fault]:
    """Every fault, by name (imports each class's module once)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return dict(sorted(FAULTS.items()))


def install(names: Iterable[str], site: FaultSite) -> None:
    known = catalogue()
    for name in names:
        if name not in known:
            raise UnknownFault(f"unknown fault {name!r} (see `cpin node --list-faults`)")
        known[name].install(site)
