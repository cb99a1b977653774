"""The `flask consent` group: registered for every app, helpful when the extension is not."""

from __future__ import annotations

from flask import Flask

from flask_consentkit.cli import cli

from .conftest import make_app


def test_group_refuses_apps_without_the_extension():
    app = Flask(__name__)
    result = app.test_cli_runner().invoke(cli, ["status"])
    assert result.exit_code != 0
    assert "flask-consentkit is not registered on this app" in result.output
    assert "Traceback" not in result.output


def test_status_shows_the_configuration(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_POLICY_VERSION="2026-11",
                   CONSENTKIT_LEDGER_URL="postgresql+psycopg://user:secret@db.internal/app")
    result = app.test_cli_runner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert "2026-11" in result.output
    assert "necessary, functional, analytics, performance, marketing" in result.output
    assert "secret" not in result.output  # the password never reaches the terminal
    assert "db.internal/app" in result.output


def test_help_lists_the_group(tmp_path):
    app = make_app(tmp_path)
    result = app.test_cli_runner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "status" in result.output


def test_the_real_flask_command_finds_the_group(tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT

    env_app = "example_app:create_app"
    result = subprocess.run([sys.executable, "-m", "flask", "--app", env_app, "consent",
                             "status"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "policy version: 1" in result.stdout


def test_status_does_not_create_a_missing_ledger(tmp_path):
    path = tmp_path / "typo" / "ledgr.db"
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=f"sqlite:///{path}")
    result = app.test_cli_runner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert (f"blocked hosts:  unreadable (LedgerMissing: There is no ledger database at {path}."
            in result.output)
    assert not path.parent.exists()
