"""Signing commands: ``flask consent keygen PATH``, ``flask consent checkpoint``, and the
``--checkpoint FILE`` part of ``flask consent verify`` (see :mod:`..ledger.checkpoints`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import click

from ..ledger import checkpoints
from ..ledger.signing import KEY_SETTING, OLD_KEYS_SETTING, Keyring, SigningError, generate
from ..ledger.store import Ledger
from . import cli, kit_state, ledger_errors, read_ledger


def keyring(*, sign: bool) -> Keyring:
    """The app's keys; a ClickException saying how to set them up when there are none."""
    ring: Keyring | None = kit_state().keyring
    if ring is None or (sign and not ring.can_sign):
        raise click.ClickException(
            f"no signing key: set {KEY_SETTING} to an Ed25519 private key file (`flask consent "
            "keygen PATH` makes one)"
            + ("." if sign else f", or list the public key files of the keys that signed in "
               f"{OLD_KEYS_SETTING}."))
    return ring


def status_signing() -> None:
    """The signing part of ``flask consent status``."""
    ext = kit_state()
    ring: Keyring | None = ext.keyring
    if ring is None or not ring.can_sign:
        click.echo(f"signing:        off: checkpoints and signed receipts need {KEY_SETTING}; "
                   "make a key with `flask consent keygen /path/consent-signing.key` and set "
                   f"{KEY_SETTING} to that path (GET /consent/receipt answers 404 until then)")
    else:
        where = "" if ext.receipt_keyring is not None else " (no ledger: no receipts to sign)"
        click.echo(f"signing:        key {ring.kid} ({ring.paths.get(ring.kid or '')}){where}")
    if ring is not None:
        old = [kid for kid in ring.public if kid != ring.kid]
        if old:
            click.echo(f"old keys:       {', '.join(old)} (verify only)")


@cli.command("keygen", with_appcontext=False)
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
def keygen_command(path: str) -> None:
    """Make an Ed25519 signing key: PATH (private, mode 0600) and PATH.pub.

    Refuses to overwrite either file. Runs without loading the app.
    """
    if not Path(path).name or path.endswith(("/", os.sep)):
        raise click.BadParameter(f"{path!r} names no file: give the path of the private key "
                                 "file to write, e.g. /etc/myapp/consent-signing.key.",
                                 param_hint="'PATH'")
    try:
        kid, public = generate(path)
    except SigningError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {path} (private key, mode 0600) and {public} (public key); key id {kid}")
    click.echo(f"set {KEY_SETTING} = {os.path.abspath(path)!r}; after a later rotation, list "
               f"{public} in {OLD_KEYS_SETTING} so that what this key signed still verifies")


@cli.command("checkpoint")
@click.option("--output", "-o", "output", default=None, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=str),
              help="Append the line to FILE (created if missing) instead of printing it.")
@ledger_errors
def checkpoint_command(output: str | None) -> None:
    """Sign the ledger's head with CONSENTKIT_SIGNING_KEY: one JSON line.

    Keep the lines where the database's writers cannot change them (another
    machine, an object store with retention, an e-mail); `flask consent verify
    --checkpoint FILE` then checks the ledger against each of them.
    """
    ring = keyring(sign=True)
    ledger = read_ledger()
    try:
        cp = checkpoints.make(ledger, ring)
    except checkpoints.CheckpointError as e:
        raise click.ClickException(str(e)) from None
    result = ledger.verify()
    if not result.ok:
        raise click.ClickException(f"no checkpoint signed: the chain is already broken "
                                   f"({result.describe()}).")
    line = cp.line() + "\n"
    if output is None:
        click.echo(line, nl=False)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise click.ClickException(f"cannot append to {output}: {e.strerror}; the checkpoint "
                                   "was not written (check the path and its permissions).") \
            from None
    click.echo(f"checkpoint of seq {cp.seq} (digest {cp.head.digest[:16]}…) signed with key "
               f"{cp.kid}, appended to {output}", err=True)


def check_files(ledger: Ledger, files: Sequence[IO[bytes]], retention_days: int | None,
                *, now: datetime | None = None) -> bool:
    """The ``--checkpoint`` part of ``verify``: report each finding; ``True`` when all hold."""
    ring = keyring(sign=False)
    days = retention_days or kit_state().settings.retention_days
    sources = [(getattr(f, "name", "-") if getattr(f, "name", None) != "<stdin>" else "-", f)
               for f in files]
    result = checkpoints.check(ledger, ring, sources, retention_days=days,
                               now=now or datetime.now(UTC))
    for finding in result.findings:
        click.echo(finding.describe(), err=True)
    names = ", ".join(str(name) for name, _ in sources)
    if result.lines == 0:
        click.echo(f"no checkpoint lines in {names}: nothing to check against (append one with "
                   "`flask consent checkpoint --output FILE`)", err=True)
        return False
    if result.findings:
        click.echo(f"checkpoints FAILED: {len(result.findings)} problem(s) in {result.lines} "
                   f"line(s) of {names}", err=True)
        return False
    click.echo(f"checkpoints OK: {result.lines} line(s) of {names}, signed by "
               f"{len(result.kids)} key(s); every checkpointed receipt is on the chain "
               f"(newest checkpoint: seq {result.newest})")
    return True
