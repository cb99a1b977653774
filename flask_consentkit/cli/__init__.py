"""The ``flask consent`` command group, registered through the ``flask.commands`` entry point."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup, ScriptInfo
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..appstate import ConsentKitState
from ..config import RETENTION_DAYS_LIMIT
from ..errors import ConsentConfigError
from ..ledger.notices import NoticeStore
from ..ledger.store import Ledger, LedgerError
from ..ledger.violations import ViolationStore

F = TypeVar("F", bound=Callable[..., Any])

#: The most days ``--days`` and ``--retention-days`` take: what ``CONSENTKIT_RETENTION_DAYS``
#: may be (100 years: a date further back is before any receipt, and far enough back leaves
#: the calendar).
MAX_DAYS = RETENTION_DAYS_LIMIT

#: Commands that need nothing of the app, so run even when it cannot load (``keygen``
#: makes the key file that ``CONSENTKIT_SIGNING_KEY`` is to name).
WITHOUT_APP = frozenset({"keygen"})


@click.group(cls=AppGroup, name="consent")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Consent reports and data-subject requests (flask-consentkit)."""
    if ctx.invoked_subcommand in WITHOUT_APP:
        return
    if not current_app:
        try:
            app = ctx.ensure_object(ScriptInfo).load_app()
        except ConsentConfigError as e:  # a message that says what to fix, not a traceback
            raise click.ClickException(f"the app's consent configuration is wrong: {e}"
                                       ) from None
        ctx.with_resource(app.app_context())
    if "consentkit" not in current_app.extensions:
        raise click.ClickException(
            "flask-consentkit is not registered on this app. Create it with "
            "ConsentKit(app) (or consent.init_app(app)) in your app factory."
        )


def kit_state() -> ConsentKitState:
    """The extension state of the current app (for the commands)."""
    state: ConsentKitState = current_app.extensions["consentkit"]
    return state


def kit_ledger() -> Ledger:
    """The app's ledger; a message saying how to turn receipts on when they are off."""
    ledger = kit_state().ledger
    if ledger is None:
        raise click.ClickException(
            "consent receipts are off (CONSENTKIT_LEDGER_URL is None); set it to an "
            "SQLAlchemy URL, or remove it for the SQLite file in the instance folder."
        )
    return ledger


def read_ledger() -> Ledger:
    """The app's ledger for a command that only reads it: one that must exist already and
    is never written (no file, folder or table created; see ``Ledger(read_only=True)``)."""
    ledger = kit_ledger()
    return Ledger(ledger.url, ledger.timeout, read_only=True)


def read_notices() -> NoticeStore:
    """The app's notices, read through :func:`read_ledger`."""
    if kit_state().notices is None:
        kit_ledger()  # says why: receipts are off
        raise click.ClickException("this app keeps no notices")
    return NoticeStore(read_ledger())


def ledger_errors(command: F) -> F:
    """Turn a ledger that cannot be used into a one-line error (exit 1), not a traceback:
    no ledger at the URL, a schema from a newer version, a database that cannot be reached
    or read."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LedgerError as e:
            raise click.ClickException(str(e)) from None
        except SQLAlchemyError as e:
            cause = e.orig if isinstance(e, DBAPIError) else e
            lines = str(cause).strip().splitlines()
            url = make_url(kit_ledger().url).render_as_string(hide_password=True)
            raise click.ClickException(f"Cannot read the ledger at {url}: "
                                       f"{lines[0] if lines else type(cause).__name__}"
                                       ) from None

    return wrapper  # type: ignore[return-value]


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
    from .signing import status_signing

    status_signing()
    _status_policy()


def _status_policy() -> None:
    """The browser policy's part of ``status``: mode, vendors, what browsers blocked."""
    ext = kit_state()
    settings = ext.settings
    vendors = ext.vendors
    policy = ext.policy
    if policy is None:
        click.echo("browser policy: off (CONSENTKIT_CSP = False): only the server's rewrite "
                   "keeps trackers out")
    else:
        everything = frozenset(settings.category_keys)
        size = len(policy.value(everything).encode())
        click.echo(f"browser policy: {policy.mode} ({policy.header}; {size} bytes when "
                   "everything is granted)")
    mode = ("follow their catalogue category" if settings.undeclared_vendors == "catalogue"
            else "blocked for everyone")
    click.echo(f"vendors:        {len(vendors.declared)} declared, {len(vendors.catalogue)} in "
               f"the catalogue; undeclared ones {mode}")
    violations = ext.violations
    if isinstance(violations, ViolationStore):  # read, never created, by status
        violations = ViolationStore(read_ledger())
    try:
        blocked = violations.top(10)
    except Exception as e:  # noqa: BLE001 - status must still print the rest
        click.echo(f"blocked hosts:  unreadable ({type(e).__name__}: {e})")
        return
    if not blocked:
        click.echo("blocked hosts:  none reported by browsers")
        return
    click.echo("blocked hosts (reported by browsers, most first):")
    for row in blocked:
        click.echo(f"  {row['count']:>7}  {row['host']}  {row['directive']}  {row['path']}  "
                   f"(last {row['last_seen']})")


from . import ledger as _ledger  # noqa: E402,F401  (export, erase, verify, prune)

# The commands live in modules of their own; importing them registers them on ``cli``.
from . import report, scan  # noqa: E402, F401
from . import signing as _signing  # noqa: E402, F401  (keygen, checkpoint)
from . import vendors as _vendors  # noqa: E402, F401  (flask consent vendors)
