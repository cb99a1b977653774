"""Signed checkpoints: ``flask consent checkpoint`` and ``flask consent verify --checkpoint``.

Whoever can write the tables can rewrite history so that ``verify`` still
passes (the three rewrites below); a checkpoint line signed with a key the
database does not hold catches each of them. Erasure and pruning keep every
checkpoint verifiable. Real SQLite and real PostgreSQL.
"""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, update

from flask_consentkit.cli import cli
from flask_consentkit.ledger import chain
from flask_consentkit.ledger.schema import meta, receipts
from flask_consentkit.ledger.signing import generate
from flask_consentkit.ledger.store import Ledger

from .conftest import make_app
from .ledger_helpers import CONSENT_ID, draft, execute, store_url  # noqa: F401

OTHER = "visitor-0000000000000002"


def make_key(tmp_path: Path, name: str = "signing.key") -> Path:
    path = tmp_path / name
    generate(path)
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return make_key(tmp_path)


@pytest.fixture
def app(store_url: str, tmp_path: Path, key: Path) -> Flask:
    return make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None,
                    CONSENTKIT_SIGNING_KEY=str(key))


def ledger_of(app: Flask) -> Ledger:
    ledger: Ledger = app.extensions["consentkit"].ledger
    return ledger


def checkpoint(app: Flask, file: Path) -> None:
    result = app.test_cli_runner().invoke(cli, ["checkpoint", "--output", str(file)])
    assert result.exit_code == 0, result.output
    assert "appended to" in result.stderr


def verify(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(cli, ["verify", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.output


# -- the three rewrites that verify alone cannot see ---------------------------------


def delete_newest(url: str) -> None:
    """Delete the newest receipt and move the head back to the one before it."""
    (newest, before) = execute(url, "SELECT seq, digest FROM consentkit_receipts "
                                    "ORDER BY seq DESC LIMIT 2")
    execute(url, "DELETE FROM consentkit_receipts WHERE seq = :seq", seq=newest[0])
    execute(url, "UPDATE consentkit_meta SET value = :v WHERE key = 'head'",
            v=chain.encode_link(before[0], before[1]))


def delete_oldest(url: str) -> None:
    """Delete the oldest receipt and write an anchor, as a prune would."""
    ((seq, digest),) = execute(url, "SELECT seq, digest FROM consentkit_receipts "
                                    "ORDER BY seq LIMIT 1")
    execute(url, "DELETE FROM consentkit_receipts WHERE seq = :seq", seq=seq)
    if execute(url, "SELECT value FROM consentkit_meta WHERE key = 'anchor'"):
        execute(url, "UPDATE consentkit_meta SET value = :v WHERE key = 'anchor'",
                v=chain.encode_link(seq, digest))
    else:
        execute(url, "INSERT INTO consentkit_meta (key, value) VALUES ('anchor', :v)",
                v=chain.encode_link(seq, digest))


def change_granted(url: str, seq: int = 3) -> None:
    """Change ``granted`` of receipt ``seq``; recompute every later digest and the head."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(select(receipts).where(receipts.c.seq >= seq)
                                .order_by(receipts.c.seq)).mappings().all()
            prev = rows[0]["prev_digest"]
            for row in rows:
                new = dict(row)
                if row["seq"] == seq:
                    new["granted"] = ",analytics,marketing,necessary,"
                new["prev_digest"] = prev
                new["digest"] = chain.receipt_digest(new)
                conn.execute(update(receipts).where(receipts.c.seq == row["seq"]).values(
                    granted=new["granted"], prev_digest=new["prev_digest"],
                    digest=new["digest"]))
                prev = new["digest"]
            conn.execute(update(meta).where(meta.c.key == "head")
                         .values(value=chain.encode_link(rows[-1]["seq"], prev)))
    finally:
        engine.dispose()


REWRITES: dict[str, tuple[Callable[[str], None], list[str]]] = {
    "delete the newest and move the head back": (delete_newest, [
        ":2 (seq 5, made ", "receipt seq 5 (the newest receipt when checkpointed",
        "is gone: the ledger now ends at seq 4 and the head moved back to it"]),
    "delete the oldest and write an anchor": (delete_oldest, [
        ":1 (seq 2, made ", ":2 (seq 5, made ", "receipt seq 1 (the oldest receipt when "
        "checkpointed", "younger than the retention period (365 days",
        "it was deleted, not pruned"]),
    "change granted and recompute the digests": (change_granted, [
        ":2 (seq 5, made ", "receipt seq 5 (the newest receipt when checkpointed",
        "was changed and the digests after it recomputed",
        "The checkpoint of seq 2 still holds, so the change lies in seq 3–5."]),
}


@pytest.mark.parametrize("rewrite", REWRITES)
def test_a_rewrite_passes_verify_but_not_verify_against_a_checkpoint(
        app: Flask, store_url: str, tmp_path: Path, rewrite: str) -> None:
    ledger = ledger_of(app)
    file = tmp_path / "checkpoints.jsonl"
    for i in range(5):
        ledger.append(draft(CONSENT_ID if i % 2 else OTHER))
        if i == 1:
            checkpoint(app, file)
    checkpoint(app, file)
    assert verify(app, "--checkpoint", str(file))[0] == 0

    do, expected = REWRITES[rewrite]
    do(store_url)
    # without a checkpoint the rewrite is undetectable
    code, output = verify(app)
    assert code == 0, output
    assert "chain intact" in output
    # against the signed lines it is caught, naming what contradicts which line
    code, output = verify(app, "--checkpoint", str(file))
    assert code == 1, output
    assert "chain intact" in output  # the chain alone still holds
    for text in expected:
        assert text in output, output
    assert f"checkpoint {file}:" in output
    assert "checkpoints FAILED" in output


def test_a_checkpoint_line_is_one_signed_json_line(app: Flask, tmp_path: Path) -> None:
    ledger = ledger_of(app)
    rows = [ledger.append(draft()) for _ in range(3)]
    result = app.test_cli_runner().invoke(cli, ["checkpoint"])  # standard output
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    data = json.loads(line)
    assert data["v"] == 1 and data["seq"] == 3 and data["digest"] == rows[-1]["digest"]
    assert data["created_at"] == chain.timestamp(rows[-1]["created_at"]) + "Z"
    assert data["first"] == {"seq": 1, "digest": rows[0]["digest"],
                             "created_at": chain.timestamp(rows[0]["created_at"]) + "Z"}
    assert data["anchor"] == {"seq": 0, "digest": chain.GENESIS}
    assert data["kid"] == app.extensions["consentkit"].keyring.kid
    assert datetime.fromisoformat(data["time"].rstrip("Z")) > datetime.now() - timedelta(days=1)
    assert len(data["sig"]) == 86  # 64 bytes, base64url
    # appending keeps earlier lines
    file = tmp_path / "c.jsonl"
    checkpoint(app, file)
    ledger.append(draft())
    checkpoint(app, file)
    lines = file.read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [3, 4]
    code, output = verify(app, "--checkpoint", str(file))
    assert code == 0 and "checkpoints OK: 2 line(s)" in output
    assert "(newest checkpoint: seq 4)" in output


def test_a_receipt_cut_out_of_the_middle_is_gone_and_the_rest_off_the_chain(
        app: Flask, store_url: str, tmp_path: Path) -> None:
    ledger = ledger_of(app)
    file = tmp_path / "checkpoints.jsonl"
    for i in range(5):
        ledger.append(draft())
        if i == 2:
            checkpoint(app, file)
    checkpoint(app, file)
    execute(store_url, "DELETE FROM consentkit_receipts WHERE seq = 3")
    code, output = verify(app, "--checkpoint", str(file))
    assert code == 1 and "ledger BROKEN" in output
    assert f"{file}:1 (seq 3, made " in output
    assert "receipt seq 3 (the newest receipt when checkpointed" in output
    assert "is gone: it was deleted from the middle of the chain." in output
    assert f"{file}:2 (seq 5, made " in output
    assert "still has the digest this checkpoint signed, but it is no longer on the chain: " \
           "the links from the anchor break at seq 3." in output


def test_forged_and_foreign_lines_fail(app: Flask, tmp_path: Path) -> None:
    ledger = ledger_of(app)
    for _ in range(3):
        ledger.append(draft())
    file = tmp_path / "checkpoints.jsonl"
    checkpoint(app, file)
    good = json.loads(file.read_text())
    # a forger moves the checkpoint to a state of their own (the signature is the old one)
    forged = {**good, "seq": 2, "digest": execute(
        str(ledger.url), "SELECT digest FROM consentkit_receipts WHERE seq = 2")[0][0]}
    # a line signed by a key this app never had
    other = make_app(tmp_path / "other", CONSENTKIT_LEDGER_URL=ledger.url,
                     CONSENTKIT_SIGNING_KEY=str(make_key(tmp_path, "other.key")))
    foreign = other.test_cli_runner().invoke(cli, ["checkpoint"]).stdout.strip()
    garbage_sig = {**good, "sig": "not base64!"}
    with file.open("a") as f:
        f.write(json.dumps(forged) + "\n" + foreign + "\n" + json.dumps(garbage_sig) + "\n")
    code, output = verify(app, "--checkpoint", str(file))
    assert code == 1
    assert f"checkpoint {file}:2 (seq 2, made " in output
    assert "its signature does not verify with key" in output
    assert "forged or altered after it was signed" in output
    assert f"checkpoint {file}:3 (seq 3" in output and "which is neither" in output
    assert "CONSENTKIT_SIGNING_OLD_KEYS" in output
    assert f"checkpoint {file}:4 (seq 3" in output
    assert "3 problem(s) in 4 line(s)" in output
    assert f"{file}:1" not in output


@pytest.mark.parametrize("content, message", [
    (b"{not json\n", "not a checkpoint line: it is not JSON"),
    (b"[1, 2]\n", "it is JSON but not an object"),
    (b'{"v": 7}\n', "its format 'v' is 7"),
    (b"\xff\xfe\n", "it is not UTF-8 text"),
    (b'{"v": 1, "seq": "5"}\n', "'seq' is missing or not a whole number"),
])
def test_a_corrupt_line_is_named_without_a_traceback(
        tmp_path: Path, key: Path, content: bytes, message: str) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=url, CONSENTKIT_SIGNING_KEY=str(key))
    ledger_of(app).append(draft())
    file = tmp_path / "checkpoints.jsonl"
    checkpoint(app, file)
    with file.open("ab") as f:
        f.write(b"\n" + content)
    code, output = verify(app, "--checkpoint", str(file))
    assert code == 1 and "Traceback" not in output
    assert f"checkpoint {file}:3: not a checkpoint line" in output
    assert message in output
    assert "restore the line from a copy, or remove it" in output


def test_bad_checkpoint_files_and_missing_keys_are_explained(tmp_path: Path, key: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=url, CONSENTKIT_SIGNING_KEY=str(key))
    ledger_of(app).append(draft())
    runner = app.test_cli_runner()
    missing = runner.invoke(cli, ["verify", "--checkpoint", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output
    assert "No such file" in missing.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, output = verify(app, "--checkpoint", str(empty))
    assert code == 1 and "no checkpoint lines in" in output
    unwritable = runner.invoke(cli, ["checkpoint", "--output",
                                     str(tmp_path / "no" / "such" / "dir.jsonl")])
    assert unwritable.exit_code == 1 and "cannot append to" in unwritable.output
    assert "the checkpoint was not written" in unwritable.output
    # standard input works too
    line = runner.invoke(cli, ["checkpoint"]).stdout
    piped = runner.invoke(cli, ["verify", "--checkpoint", "-"], input=line)
    assert piped.exit_code == 0 and "checkpoints OK: 1 line(s) of -" in piped.output

    unsigned = make_app(tmp_path, CONSENTKIT_LEDGER_URL=url).test_cli_runner()
    result = unsigned.invoke(cli, ["checkpoint"])
    assert result.exit_code == 1
    assert "no signing key: set CONSENTKIT_SIGNING_KEY" in result.output
    assert "flask consent keygen PATH" in result.output
    file = tmp_path / "c.jsonl"
    file.write_text(line)
    result = unsigned.invoke(cli, ["verify", "--checkpoint", str(file)])
    assert result.exit_code == 1 and "CONSENTKIT_SIGNING_OLD_KEYS" in result.output


def test_no_checkpoint_of_a_broken_chain(app: Flask, store_url: str, tmp_path: Path) -> None:
    ledger = ledger_of(app)
    for _ in range(3):
        ledger.append(draft())
    execute(store_url, "UPDATE consentkit_receipts SET denied = ',' WHERE seq = 2")
    file = tmp_path / "c.jsonl"
    result = app.test_cli_runner().invoke(cli, ["checkpoint", "--output", str(file)])
    assert result.exit_code == 1 and "no checkpoint signed: the chain is already broken" \
        in result.output
    assert not file.exists()


# -- erasure and pruning keep every checkpoint verifiable ---------------------------------


def test_erasure_and_pruning_after_checkpoints_keep_them_verifiable(
        app: Flask, tmp_path: Path) -> None:
    ledger = ledger_of(app)
    file = tmp_path / "checkpoints.jsonl"
    old = datetime.now(UTC) - timedelta(days=400)
    for i in range(4):
        ledger.append(draft(OTHER), created_at=old + timedelta(minutes=i))
    checkpoint(app, file)  # its head and its first receipt will both be pruned
    for _ in range(3):
        ledger.append(draft())
    checkpoint(app, file)  # its first receipt will be pruned, its head kept
    runner = app.test_cli_runner()

    erased = runner.invoke(cli, ["erase", CONSENT_ID, "--yes"])
    assert erased.exit_code == 0 and "erased 3 receipt(s)" in erased.output
    code, output = verify(app, "--checkpoint", str(file))
    assert code == 0, output
    assert "(3 erased)" in output and "checkpoints OK: 2 line(s)" in output

    pruned = runner.invoke(cli, ["prune"])
    assert pruned.exit_code == 0 and "deleted 4 receipt(s)" in pruned.output
    checkpoint(app, file)  # after the prune: its anchor is seq 4
    code, output = verify(app, "--checkpoint", str(file))
    assert code == 0, output
    assert "ledger OK: 4 receipts" in output and "checkpoints OK: 3 line(s)" in output
    # ... and the checkpoints still catch a rewrite made after all that
    delete_oldest(ledger.url)
    code, output = verify(app, "--checkpoint", str(file))
    assert code == 1 and f"{file}:3 (seq 8" in output, output
    assert "receipt seq 5 (the oldest receipt when checkpointed" in output
    assert "1 problem(s) in 3 line(s)" in output


def test_a_prune_shorter_than_the_retention_needs_retention_days(
        app: Flask, tmp_path: Path) -> None:
    ledger = ledger_of(app)
    file = tmp_path / "checkpoints.jsonl"
    month = datetime.now(UTC) - timedelta(days=30)
    ledger.append(draft(), created_at=month)
    ledger.append(draft())
    checkpoint(app, file)
    runner = app.test_cli_runner()
    assert "deleted 1 receipt(s)" in runner.invoke(cli, ["prune", "--days", "7"]).output
    code, output = verify(app, "--checkpoint", str(file))
    assert code == 1 and "younger than the retention period (365 days" in output
    code, output = verify(app, "--checkpoint", str(file), "--retention-days", "7")
    assert code == 0, output


# -- key rotation ------------------------------------------------------------------------


def test_checkpoints_of_an_old_key_verify_after_rotation(
        app: Flask, store_url: str, tmp_path: Path, key: Path) -> None:
    ledger = ledger_of(app)
    file = tmp_path / "checkpoints.jsonl"
    ledger.append(draft())
    checkpoint(app, file)
    old_kid = app.extensions["consentkit"].keyring.kid

    new_key = make_key(tmp_path, "signing-2027.key")
    rotated = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None,
                       CONSENTKIT_SIGNING_KEY=str(new_key),
                       CONSENTKIT_SIGNING_OLD_KEYS=[f"{key}.pub"])
    new_kid = rotated.extensions["consentkit"].keyring.kid
    assert new_kid != old_kid
    ledger_of(rotated).append(draft())
    checkpoint(rotated, file)
    kids = [json.loads(x)["kid"] for x in file.read_text().splitlines()]
    assert kids == [old_kid, new_kid]
    code, output = verify(rotated, "--checkpoint", str(file))
    assert code == 0 and "checkpoints OK: 2 line(s)" in output and "by 2 key(s)" in output
    status = rotated.test_cli_runner().invoke(cli, ["status"]).output
    assert f"signing:        key {new_kid}" in status and f"old keys:       {old_kid}" in status

    # without the old key listed, its lines cannot be checked: said, exit 1
    forgot = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url,
                      CONSENTKIT_SIGNING_KEY=str(new_key))
    code, output = verify(forgot, "--checkpoint", str(file))
    assert code == 1 and f"signed by key {old_kid}, which is neither" in output
    # verifying needs no private key: the public files alone do
    auditor = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url,
                       CONSENTKIT_SIGNING_OLD_KEYS=[f"{key}.pub", f"{new_key}.pub"])
    code, output = verify(auditor, "--checkpoint", str(file))
    assert code == 0, output
    assert "signing:        off" in auditor.test_cli_runner().invoke(cli, ["status"]).output
