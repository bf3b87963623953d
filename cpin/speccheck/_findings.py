"""What the validator reports: errors located by file and JSON pointer, and a summary."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class SpecError:
    file: str
    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}#{self.pointer}: {self.message}"


@dataclass
class Findings:
    """Collects errors as the checks run; `facts` feeds the summary."""

    errors: list[SpecError] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, file: str, pointer: str | Iterable[str | int], message: str) -> None:
        if not isinstance(pointer, str):
            pointer = pointer_of(pointer)
        self.errors.append(SpecError(file, pointer, message))


def pointer_of(parts: Iterable[str | int]) -> str:
    """RFC 6901 JSON pointer of a path of keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


_INSTANCE_KEYWORDS = {"const", "enum", "default", "examples", "example"}


def walk(
    node: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every (path, value) below node, not descending into example or constant instances."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in _INSTANCE_KEYWORDS:
                yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))
