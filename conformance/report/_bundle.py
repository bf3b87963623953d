"""Writes the bundle's files in order: evidence, HTML, then report.json with the manifest."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.certification import Certification
from conformance.redaction import redact_text
from conformance.report._json import build_report

if TYPE_CHECKING:
    from conformance.session import Certifier

LOAD_EVIDENCE = "evidence/load"  # where a joined load run's files go (session.LOAD_EVIDENCE)

_MEDIA = {".har": "application/json", ".log": "text/plain", ".xml": "application/xml",
          ".json": "application/json", ".html": "text/html", ".csv": "text/csv",
          ".txt": "text/plain", ".png": "image/png"}  # fmt: skip


def write_bundle(certifier: Certifier, result: Certification) -> Path:
    folder = certifier.folder
    folder.mkdir(parents=True, exist_ok=True)
    certifier.recorder.write(folder, _harness_version())
    log = folder / "evidence" / "run.log"
    log.write_text("\n".join(certifier.log_lines) + "\n", encoding="utf-8")
    if certifier.load_folder is not None:
        shutil.copytree(certifier.load_folder, folder / LOAD_EVIDENCE, dirs_exist_ok=True)
    _redact_files(folder, certifier.recorder.secrets)
    report = build_report(certifier, result)
    report["artefacts"] = manifest(folder)  # the page lists the evidence files it stands on
    _write_html(folder, report)
    report["artefacts"] = manifest(folder)
    path = folder / "report.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def _redact_files(folder: Path, secrets: list[str]) -> None:
    """junit.xml and allure-results are written by other plugins from test messages, which may
    quote a node's answer: they pass through the same redaction as our own evidence."""
    for path in [folder / "junit.xml", *sorted((folder / "allure-results").glob("*.json"))]:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            cleaned = redact_text(text, secrets)
            if cleaned != text:
                path.write_text(cleaned, encoding="utf-8")


def _write_html(folder: Path, report: dict[str, object]) -> None:
    from conformance.report._html import render

    series_file = folder / LOAD_EVIDENCE / "timeseries.json"
    series = json.loads(series_file.read_text(encoding="utf-8")) if series_file.is_file() else None
    (folder / "report.html").write_text(render(report, series=series), encoding="utf-8")


def manifest(folder: Path) -> list[dict[str, str]]:
    """Every file of the bundle but report.json, with its digest, in path order."""
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == "report.json":
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        media = (
            _MEDIA.get(path.suffix)
            or mimetypes.guess_type(path.name)[0]
            or "application/octet-stream"
        )
        entries.append({"path": relative, "sha256": digest, "mediaType": media})
    return entries


def _harness_version() -> str:
    from cpin import __version__

    return __version__
