"""Staff commands of the ledger: ``export``, ``notice``, ``erase``, ``verify``, ``prune``."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from ..categories import NECESSARY
from ..ledger.formats import FORMATS, render
from ..ledger.schema import SCHEMA_VERSION
from ..ledger.store import PRUNE_BATCH, Draft
from . import MAX_DAYS, cli, kit_ledger, kit_state, ledger_errors, read_ledger, read_notices

_CONSENT_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _consent_id(value: str) -> str:
    value = value.strip()
    if not _CONSENT_ID.match(value):
        raise click.BadParameter(
            f"{value[:80]!r} is not a consent id (16–64 letters, digits, '-' or '_'; the "
            "visitor finds it at /consent/state).", param_hint="ID")
    return value


@cli.command("export")
@click.argument("consent_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True,
              help="json: the receipts as kept; dpv: ISO/IEC TS 27560 consent records in the "
              "W3C DPV vocabulary (JSON-LD); kantara: Kantara Consent Receipts v1.1.")
@ledger_errors
def export_command(consent_id: str, fmt: str) -> None:
    """Print the receipts of consent id ID as JSON (a data-subject access request)."""
    consent_id = _consent_id(consent_id)
    found = read_ledger().export(consent_id)
    document: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "consent_id": consent_id}
    if fmt == "json":
        document["receipts"] = found
    else:
        store = read_notices()
        notices: dict[str, Any] = {}
        for receipt in found:
            ident = receipt.get("notice_id")
            if ident and ident not in notices:
                notices[ident] = store.get(ident)
        document["format"] = fmt
        key = "records" if fmt == "dpv" else "receipts"
        document[key] = render(found, notices, fmt, consent_id)
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    if not found:
        click.echo(f"no receipts for {consent_id}", err=True)


_NOTICE_ID = re.compile(r"^[0-9a-f]{64}$")
_RECEIPT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@cli.command("notice")
@click.argument("ident", metavar="ID")
@ledger_errors
def notice_command(ident: str) -> None:
    """Print the notice ID (or the notice of receipt ID) as it was shown, as JSON.

    A notice is what the visitor was shown and told when they decided: the
    banner's text in their language, the categories and services, the policy and
    the controller. Each receipt names one (its ``notice_id``).
    """
    ident = ident.strip().lower()
    store = read_notices()
    if _RECEIPT_ID.match(ident):
        receipt = store.ledger.receipt(ident)
        if receipt is None:
            raise click.ClickException(f"no receipt {ident}")
        if not receipt.get("notice_id"):
            raise click.ClickException(f"receipt {ident} names no notice (receipts of "
                                       "erasures and of apps without the banner name none)")
        ident = receipt["notice_id"]
    elif not _NOTICE_ID.match(ident):
        raise click.BadParameter(f"{ident[:80]!r} is neither a notice id (64 hex digits, a "
                                 "receipt's notice_id) nor a receipt id (a UUID)",
                                 param_hint="ID")
    content = store.get(ident)
    if content is None:
        raise click.ClickException(
            f"no notice {ident} is kept (receipts written before notices were kept name "
            "the hash of the banner's text only)")
    click.echo(json.dumps({"notice_id": ident, **content}, indent=2, ensure_ascii=False))


@cli.command("erase")
@click.argument("consent_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@ledger_errors
def erase_command(consent_id: str, yes: bool) -> None:
    """Erase the receipts of consent id ID (a tombstone keeps the chain verifiable).

    An id without receipts (never recorded, or erased already) is refused with
    exit status 1, and no tombstone is written: there is nothing to erase.
    """
    consent_id = _consent_id(consent_id)
    found = len(read_ledger().export(consent_id))  # a missing ledger is not created
    if not found:
        raise click.ClickException(
            f"no receipts for {consent_id}: nothing to erase, so no tombstone was written "
            "(the id was never recorded, or its receipts were erased already; `flask consent "
            "export ID` shows what the ledger holds).")
    if not yes:
        click.confirm(f"Erase every receipt of {consent_id} ({found})?", abort=True)
    settings = kit_state().settings
    tombstone = Draft(
        action="erase",
        consent_id=None,
        granted=frozenset({NECESSARY}),
        denied=frozenset(settings.optional_keys),
        policy_version=settings.policy_version,
        method="api",
    )
    count, row = kit_ledger().erase(consent_id, tombstone)
    click.echo(f"erased {count} receipt(s) of {consent_id}; tombstone {row['receipt_id']}")


@cli.command("verify")
@click.option("--checkpoint", "checkpoint_files", type=click.File("rb"), multiple=True,
              metavar="FILE", help="Also check the ledger against every signed line of FILE "
              "(`flask consent checkpoint` writes them; '-' reads standard input; repeatable).")
@click.option("--retention-days", type=click.IntRange(1, MAX_DAYS), default=None,
              help="With --checkpoint: the shortest retention ever pruned with (default: "
              "CONSENTKIT_RETENTION_DAYS); a checkpointed receipt younger than it that is gone "
              "was deleted, not pruned.")
@ledger_errors
def verify_command(checkpoint_files: tuple[Any, ...], retention_days: int | None) -> None:
    """Check the hash chain; exit 1 naming the first bad receipt.

    A kept notice whose content no longer hashes to its id fails it too.
    With --checkpoint FILE, also exit 1 when a checkpointed receipt is gone,
    changed or off the chain, or a line's signature does not verify.
    """
    ledger = read_ledger()
    result = ledger.verify()
    if result.ok:
        click.echo(f"{result.describe()} ({result.erased} erased)")
    else:
        click.echo(result.describe(), err=True)
    ok = result.ok
    store = read_notices() if kit_state().notices is not None else None
    for problem in store.check() if store is not None else ():
        click.echo(problem, err=True)
        ok = False
    if checkpoint_files:
        from .signing import check_files

        ok = check_files(ledger, checkpoint_files, retention_days) and ok
    if not ok:
        raise SystemExit(1)


@cli.command("prune")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--days", type=click.IntRange(1, MAX_DAYS), default=None,
              help="Keep this many days (default: CONSENTKIT_RETENTION_DAYS).")
@click.option("--batch-size", type=click.IntRange(min=1), default=PRUNE_BATCH, show_default=True,
              help="Receipts deleted per transaction.")
@ledger_errors
def prune_command(dry_run: bool, days: int | None, batch_size: int) -> None:
    """Delete receipts older than the retention period, in batches."""
    days = days or kit_state().settings.retention_days
    before = datetime.now(UTC) - timedelta(days=days)
    # counted without writing: a missing ledger is not created to delete nothing from it
    count = read_ledger().prune(before, dry_run=True)
    if count and not dry_run:
        count = kit_ledger().prune(before, batch_size=batch_size)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {count} receipt(s) older than {days} days "
               f"(before {before.strftime('%Y-%m-%d %H:%M:%S')} UTC)")
