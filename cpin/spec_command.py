"""`cpin spec validate`: run the validator and show its findings to a person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cpin.speccheck import Findings, validate
from spec import Spec


def run_validate(folder: Path | None) -> int:
    spec = Spec(folder) if folder else Spec()
    found = validate(spec)
    console = Console(highlight=False, soft_wrap=True)
    if found.errors:
        for error in found.errors:
            console.print(str(error), markup=False)
        console.print(f"spec {spec.root}: {len(found.errors)} error(s)", style="bold red")
        return 1
    _print_summary(console, spec, found)
    return 0


def _print_summary(console: Console, spec: Spec, found: Findings) -> None:
    facts: dict[str, Any] = found.facts
    requirements: dict[str, dict[str, int]] = facts["requirements"]
    operations: dict[str, int] = facts["operations_per_class"]
    levels = spec.codes("requirement-level")
    table = Table(title=f"CPIN spec {spec.version} — {spec.root}")
    table.add_column("class")
    table.add_column("operations", justify="right")
    for level in levels:
        table.add_column(level, justify="right")
    for cls, per_level in requirements.items():
        table.add_row(cls, str(operations.get(cls, 0)), *(str(per_level[lvl]) for lvl in levels))
    totals = [str(sum(r[lvl] for r in requirements.values())) for lvl in levels]
    table.add_row("total", str(sum(operations.values())), *totals, style="bold")
    console.print(table)
    methods = ", ".join(f"{n} {m}" for m, n in sorted(facts["requirements_by_method"].items()))
    console.print(
        f"{facts['schemas']} schemas, {facts['codelists']} code lists, "
        f"{facts['examples']} example documents, {facts['vectors']} identifier vectors; "
        f"requirements tested: {methods}"
    )
    console.print(f"spec {spec.version} ({spec.digest()}) is valid", style="bold green")
