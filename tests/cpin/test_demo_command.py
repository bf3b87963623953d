"""cpin/demo_command.py: what the demo tells its reader once the federation is stopped (the
whole demo runs in `make demo`; tests/cpin/test_selftest.py certifies the same federation)."""

from __future__ import annotations

from pathlib import Path

from conformance.runner import Run
from cpin.demo_command import report_lines


def test_every_report_path_is_printed_whole(tmp_path: Path) -> None:
    written = tmp_path / ("a-run-id-long-enough-to-be-cut-in-any-table-cell-" * 3)
    written.mkdir()
    (written / "report.html").write_text("<html></html>", encoding="utf-8")
    broken = tmp_path / "a-run-that-wrote-no-report"
    runs = {
        "national": ("national", "N0000001U", Run(0, written), 1.0),
        "beijing": ("regional", "R11000018", Run(3, broken), 1.0),
    }
    assert report_lines(runs) == [
        f"report of national: {written / 'report.html'}",
        f"report of beijing: {broken}",
    ]
