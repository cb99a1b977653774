"""The wheel carries what a user needs; the code passes ruff and mypy (strict)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import entry_points

import pytest

from .conftest import ROOT


def test_flask_consent_command_is_registered_through_the_entry_point():
    names = {ep.name: ep.value for ep in entry_points(group="flask.commands")}
    assert names.get("consent") == "flask_consentkit.cli:cli"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = out.glob("*.whl")
    return path


def test_wheel_contains_templates_static_files_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "flask_consentkit/py.typed" in names
    assert "flask_consentkit/templates/consentkit/preferences.html" in names
    shipped_static = {n for n in names if n.startswith("flask_consentkit/static/")}
    source_static = {f"flask_consentkit/static/{p.name}" for p in (ROOT / "static").iterdir()
                     if p.suffix in (".js", ".css")}
    assert source_static <= shipped_static
    assert not any(n.startswith(("tests/", "example_app/", "bench/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "[flask.commands]" in text and "consent = flask_consentkit.cli:cli" in text


@pytest.mark.skipif(shutil.which("ruff") is None and not shutil.which(
    "ruff", path=str(ROOT / ".venv" / "bin")), reason="ruff is not installed")
def test_ruff_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]


def test_mypy_strict_passes():
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
