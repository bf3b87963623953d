"""An installed wheel carries the whole spec and validates it without the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import spec

PROJECT = Path(spec.__file__).resolve().parents[1]


def _python(*args: str, site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


def test_wheel_ships_and_validates_the_spec(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(PROJECT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    site = tmp_path / "site"
    zipfile.ZipFile(next(dist.glob("*.whl"))).extractall(site)
    shipped = {p.relative_to(site / "spec") for p in (site / "spec").rglob("*.*")}
    in_checkout = {
        p.relative_to(spec.ROOT) for p in spec.ROOT.rglob("*.*") if "__pycache__" not in p.parts
    }
    assert shipped >= in_checkout

    located = _python("-c", "import spec; print(spec.ROOT)", site=site, cwd=tmp_path)
    assert located.stdout.strip() == str(site / "spec")
    validated = _python("-m", "cpin", "spec", "validate", site=site, cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert str(site / "spec") in validated.stdout
