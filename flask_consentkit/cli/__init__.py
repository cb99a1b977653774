"""The ``flask consent`` command group, registered through the ``flask.commands`` entry point."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from ..extension import ConsentKitState


@click.group(cls=AppGroup, name="consent")
@with_appcontext
def cli() -> None:
    """Consent reports and data-subject requests (flask-consentkit)."""
    if "consentkit" not in current_app.extensions:
        raise click.ClickException(
            "flask-consentkit is not registered on this app. Create it with "
            "ConsentKit(app) (or consent.init_app(app)) in your app factory."
        )


def kit_state() -> ConsentKitState:
    """The extension state of the current app (for the commands)."""
    state: ConsentKitState = current_app.extensions["consentkit"]
    return state


@cli.command("status")
def status() -> None:
    """Show the consent configuration in effect."""
    settings = kit_state().settings
    click.echo(f"policy version: {settings.policy_version}")
    click.echo(f"categories:     {', '.join(settings.category_keys)}")
    click.echo(f"cookie:         {settings.cookie_name} (max age {settings.max_age} s)")
    click.echo(f"endpoints:      {settings.url_prefix or '/'}")
    ledger = settings.ledger_url or "off"
    if "@" in ledger:
        scheme, _, rest = ledger.partition("://")
        ledger = f"{scheme}://***@{rest.rpartition('@')[2]}"
    click.echo(f"ledger:         {ledger}")


from . import ledger as _ledger  # noqa: E402,F401  (export, erase, verify, prune)

# The commands live in modules of their own; importing them registers them on ``cli``.
from . import report, scan  # noqa: E402, F401
