"""Signed checkpoints: what the ledger held, in a file its database writers cannot change.

The chain of :mod:`.chain` is unkeyed and its head lives beside it: whoever can
write the tables can delete the newest receipts and move the head back, delete
the oldest and write an anchor, or change a receipt and recompute every later
digest — and :meth:`Ledger.verify` still passes. A *checkpoint* pins the
chain down with a key the database does not hold.

One checkpoint is one JSON line (canonical: sorted keys, no spaces)::

    {"anchor":{"digest":"00…","seq":0},"created_at":"2026-11-02T03:00:00.123456Z",
     "digest":"9f…","first":{"created_at":"…Z","digest":"1c…","seq":1},
     "kid":"Qx…","seq":5120,"sig":"…","time":"2026-11-02T03:00:01Z","v":1}

``seq`` and ``digest`` are the head (the newest receipt's sequence number and
chained digest), ``created_at`` that receipt's time; ``first`` is the oldest
receipt then kept and ``anchor`` the chain's anchor then (where pruning left
it); ``time`` is when the checkpoint was made, ``kid`` the signing key's id and
``sig`` the Ed25519 signature (base64url) of :data:`DOMAIN` followed by the
canonical JSON of every other field.

**Why erasure and pruning keep every checkpoint verifiable.** A receipt's
chained digest covers its non-personal columns and the *commitment* to its
personal ones (:func:`.chain.receipt_digest`); erasure nulls the personal
columns and their salt but keeps both digests, so the digest at every
checkpointed sequence number is unchanged. Pruning deletes the oldest
receipts, all older than the cutoff it was given, and keeps the digest of the
last one as the anchor. A checkpointed receipt that is gone is therefore
accepted as pruned only when it lies at or below the anchor *and* was created
before the retention period (``CONSENTKIT_RETENTION_DAYS``): a receipt still
within it was deleted, not pruned. Each line names two receipts with their
times (its head and ``first``), so deleting the oldest receipts after a
checkpoint removes that checkpoint's ``first``.

:func:`check` reports, for every line: a signature that does not verify (or a
key it does not know), a checkpointed receipt that is gone, changed (another
digest at that sequence number), or no longer on the chain (its links to the
anchor are broken), a rewritten anchor, and a line that is not a checkpoint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from ..errors import ConsentKitError
from . import chain
from .schema import meta, receipts
from .signing import (
    KEY_SETTING,
    OLD_KEYS_SETTING,
    Keyring,
    b64url,
    b64url_decode,
    canonical_json,
)
from .store import Ledger

#: The format of a line (``"v"``).
FORMAT = 1
#: What precedes the canonical JSON in the signed bytes (no JWS signing input
#: can start so: base64url has no spaces).
DOMAIN = b"consentkit checkpoint v1\n"
#: Receipts read per query by the walk of :func:`check`.
BATCH = 5000
#: A line longer than this is not a checkpoint (a real one is about 450 bytes).
MAX_LINE = 4096

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = frozenset({"v", "seq", "digest", "created_at", "first", "anchor", "time", "kid",
                     "sig"})


class CheckpointError(ConsentKitError):
    """A checkpoint cannot be made (the message says why and what to do)."""


class LineError(ValueError):
    """A line that is not a checkpoint; the message says what is wrong with it."""


@dataclass(frozen=True)
class Point:
    """A receipt a checkpoint names: its sequence number, chained digest and time."""

    seq: int
    digest: str
    #: ``"…Z"`` as in the export; ``None`` for the anchor (no receipt row)
    created_at: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    """One signed line."""

    head: Point
    first: Point | None
    anchor: tuple[int, str]
    time: str
    kid: str
    sig: str = ""

    @property
    def seq(self) -> int:
        return self.head.seq

    def body(self) -> dict[str, Any]:
        """Every field but the signature."""
        return {
            "v": FORMAT,
            "seq": self.head.seq,
            "digest": self.head.digest,
            "created_at": self.head.created_at,
            "first": None if self.first is None else {
                "seq": self.first.seq, "digest": self.first.digest,
                "created_at": self.first.created_at},
            "anchor": {"seq": self.anchor[0], "digest": self.anchor[1]},
            "time": self.time,
            "kid": self.kid,
        }

    def signed_bytes(self) -> bytes:
        return DOMAIN + canonical_json(self.body())

    def line(self) -> str:
        """The JSON line (without the newline)."""
        return canonical_json({**self.body(), "sig": self.sig}).decode("utf-8")


def _timestamp(value: datetime) -> str:
    return chain.timestamp(value) + "Z"


# -- making one --------------------------------------------------------------------


def _snapshot(conn: Connection) -> tuple[tuple[int, str], tuple[int, str] | None,
                                         Point | None, Point | None]:
    """``(anchor, head, head receipt, first receipt)`` as this transaction sees them."""
    info = {str(k): str(v) for k, v in conn.execute(select(meta.c.key, meta.c.value))}
    anchor = chain.decode_link(info.get("anchor")) or (0, chain.GENESIS)
    head = chain.decode_link(info.get("head"))
    columns = (receipts.c.seq, receipts.c.digest, receipts.c.created_at)
    head_row = None if head is None else conn.execute(
        select(*columns).where(receipts.c.seq == head[0])).first()
    first_row = conn.execute(select(*columns).where(receipts.c.seq > anchor[0])
                             .order_by(receipts.c.seq).limit(1)).first()

    def point(row: Any) -> Point | None:
        return None if row is None else Point(int(row[0]), str(row[1]), _timestamp(row[2]))

    return anchor, head, point(head_row), point(first_row)


def _reading(ledger: Ledger) -> Any:
    """A connection that reads one snapshot (``REPEATABLE READ`` on PostgreSQL)."""
    conn = ledger.engine.connect()
    if conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def make(ledger: Ledger, keyring: Keyring, *, now: datetime | None = None) -> Checkpoint:
    """Sign a checkpoint of the ledger as it is now.

    The caller verifies the chain first (:meth:`Ledger.verify`): a checkpoint
    says the receipts up to its head were intact when it was made.
    """
    if not keyring.can_sign:
        raise CheckpointError(f"a checkpoint is signed with {KEY_SETTING}, which is not set: "
                              "make a key with `flask consent keygen PATH` and set "
                              f"{KEY_SETTING} = PATH.")
    with _reading(ledger) as conn, conn.begin():
        anchor, head, head_point, first = _snapshot(conn)
    if head is None:
        raise CheckpointError("the head row of consentkit_meta is missing or garbled; "
                              "`flask consent verify` says more.")
    if head[0] <= anchor[0]:  # nothing kept after the anchor (an empty or wholly pruned ledger)
        head_point, first = Point(head[0], head[1]), None
    elif head_point is None or head_point.digest != head[1]:
        raise CheckpointError(f"the ledger's head names seq {head[0]}, which does not hold "
                              "that digest; `flask consent verify` says more.")
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    unsigned = Checkpoint(head=head_point, first=first, anchor=anchor, time=stamp,
                          kid=keyring.kid or "")
    kid, signature = keyring.sign(unsigned.signed_bytes())
    return Checkpoint(head=head_point, first=first, anchor=anchor, time=stamp, kid=kid,
                      sig=b64url(signature))


# -- reading lines -------------------------------------------------------------------


def _int(data: dict[str, Any], name: str, where: str = "") -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LineError(f"{where}{name!r} is missing or not a whole number")
    return value


def _digest(data: dict[str, Any], name: str, where: str = "") -> str:
    value = data.get(name)
    if not isinstance(value, str) or not _HEX64.match(value):
        raise LineError(f"{where}{name!r} is missing or not a SHA-256 hex digest")
    return value


def _time(data: dict[str, Any], name: str, where: str = "", *, optional: bool = False
          ) -> str | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.endswith("Z"):
        raise LineError(f"{where}{name!r} is missing or not a UTC time like "
                        "'2026-11-02T03:00:00Z'")
    try:
        datetime.fromisoformat(value[:-1])
    except ValueError:
        raise LineError(f"{where}{name!r} is not a UTC time like '2026-11-02T03:00:00Z'"
                        ) from None
    return value


def parse(text: bytes | str) -> Checkpoint:
    """One line → :class:`Checkpoint`; :class:`LineError` says what is wrong with it."""
    if len(text) > MAX_LINE:
        raise LineError(f"it is {len(text)} bytes long, far more than a checkpoint")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise LineError("it is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise LineError(f"it is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise LineError("it is JSON but not an object")
    if data.get("v") != FORMAT:
        raise LineError(f"its format 'v' is {data.get('v')!r}; this flask-consentkit reads "
                        f"version {FORMAT}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise LineError(f"it has unknown field(s) {', '.join(unknown)}")
    head = Point(_int(data, "seq"), _digest(data, "digest"),
                 _time(data, "created_at", optional=True))
    first_data = data.get("first")
    first: Point | None = None
    if first_data is not None:
        if not isinstance(first_data, dict):
            raise LineError("'first' is not an object")
        first = Point(_int(first_data, "seq", "first."), _digest(first_data, "digest", "first."),
                      _time(first_data, "created_at", "first."))
    anchor_data = data.get("anchor")
    if not isinstance(anchor_data, dict):
        raise LineError("'anchor' is missing or not an object")
    anchor = (_int(anchor_data, "seq", "anchor."), _digest(anchor_data, "digest", "anchor."))
    kid, sig = data.get("kid"), data.get("sig")
    if not isinstance(kid, str) or not kid:
        raise LineError("'kid' (the signing key's id) is missing")
    if not isinstance(sig, str) or not sig:
        raise LineError("'sig' (the signature) is missing")
    return Checkpoint(head=head, first=first, anchor=anchor, time=str(_time(data, "time")),
                      kid=kid, sig=sig)


# -- checking the ledger against lines ----------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """What contradicts one checkpoint line (or why a line cannot be checked)."""

    source: str
    lineno: int
    message: str
    checkpoint: Checkpoint | None = None

    def describe(self) -> str:
        where = f"checkpoint {self.source}:{self.lineno}"
        if self.checkpoint is not None:
            where += f" (seq {self.checkpoint.seq}, made {self.checkpoint.time})"
        return f"{where}: {self.message}"


@dataclass
class CheckResult:
    """The outcome of :func:`check`."""

    #: checkpoint lines read (blank lines aside)
    lines: int = 0
    findings: list[Finding] = field(default_factory=list)
    #: key ids whose signatures verified
    kids: set[str] = field(default_factory=set)
    #: the highest checkpointed sequence number that holds
    newest: int | None = None

    @property
    def ok(self) -> bool:
        return self.lines > 0 and not self.findings


@dataclass
class _Chain:
    """What the walk of :func:`check` learnt of the ledger."""

    anchor: tuple[int, str]
    head: tuple[int, str] | None
    #: digest of each receipt of interest that exists, by seq
    digests: dict[int, str] = field(default_factory=dict)
    #: the last seq reached from the anchor by unbroken links (the anchor's seq if none)
    linked_upto: int = 0
    #: the seq where the links break, if they do
    break_at: int | None = None
    last: int = 0


def _walk(ledger: Ledger, wanted: set[int]) -> _Chain:
    """Follow the links from the anchor: digests of ``wanted`` and where the links hold.

    Only ``seq``, ``digest`` and ``prev_digest`` are read: whether each digest
    matches its receipt's content is :meth:`Ledger.verify`'s part.
    """
    with _reading(ledger) as conn, conn.begin():
        anchor, head, _, _ = _snapshot(conn)
        found = _Chain(anchor=anchor, head=head, linked_upto=anchor[0], last=anchor[0])
        expect_seq, expect_prev = anchor
        linked = True
        while True:
            rows = conn.execute(
                select(receipts.c.seq, receipts.c.digest, receipts.c.prev_digest)
                .where(receipts.c.seq > found.last).order_by(receipts.c.seq).limit(BATCH)
            ).all()
            for seq, digest, prev in rows:
                if seq in wanted:
                    found.digests[seq] = digest
                if linked and (seq != expect_seq + 1 or prev != expect_prev):
                    linked = False
                    found.break_at = expect_seq + 1 if seq != expect_seq + 1 else seq
                if linked:
                    found.linked_upto = seq
                expect_seq, expect_prev = seq, digest
                found.last = seq
            if len(rows) < BATCH:
                break
    return found


def _lines(sources: Iterable[tuple[str, Iterable[bytes]]]
           ) -> Iterator[tuple[str, int, bytes]]:
    for source, lines in sources:
        for lineno, raw in enumerate(lines, 1):
            text = raw.strip()
            if text:
                yield source, lineno, text


def check(ledger: Ledger, keyring: Keyring, sources: Iterable[tuple[str, Iterable[bytes]]],
          *, retention_days: int, now: datetime | None = None) -> CheckResult:
    """Check the ledger against every line of ``sources`` (``(name, lines)`` pairs)."""
    result = CheckResult()
    good: list[tuple[str, int, Checkpoint]] = []
    for source, lineno, text in _lines(sources):
        result.lines += 1
        try:
            cp = parse(text)
        except LineError as e:
            result.findings.append(Finding(source, lineno, (
                f"not a checkpoint line: {e}. Each line is one JSON object as `flask consent "
                "checkpoint` writes it; restore the line from a copy, or remove it if it was "
                "never one (a damaged line cannot vouch for anything).")))
            continue
        if cp.kid not in keyring.public:
            result.findings.append(Finding(source, lineno, (
                f"signed by key {cp.kid}, which is neither {KEY_SETTING} nor one of "
                f"{OLD_KEYS_SETTING}: list that key's .pub file in {OLD_KEYS_SETTING} to "
                "check it (a line signed by a key you never had is forged)."), cp))
            continue
        try:
            valid = keyring.verify(cp.kid, cp.signed_bytes(), b64url_decode(cp.sig))
        except ValueError:
            valid = False
        if not valid:
            result.findings.append(Finding(source, lineno, (
                f"its signature does not verify with key {cp.kid}: the line was forged or "
                "altered after it was signed, so it proves nothing."), cp))
            continue
        result.kids.add(cp.kid)
        good.append((source, lineno, cp))
    if not good:
        return result

    wanted = {cp.head.seq for _, _, cp in good} | \
        {cp.first.seq for _, _, cp in good if cp.first is not None}
    found = _walk(ledger, wanted)
    clock = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    cutoff = clock - timedelta(days=retention_days)
    holding: list[int] = []
    for source, lineno, cp in good:
        problems = _check_one(cp, found, cutoff, retention_days)
        if problems:
            result.findings += [Finding(source, lineno, p, cp) for p in problems]
        else:
            holding.append(cp.seq)
    result.newest = max(holding, default=None)
    _narrow(result, holding)
    return result


def _narrow(result: CheckResult, holding: list[int]) -> None:
    """Say between which checkpoints a changed receipt lies."""
    for i, finding in enumerate(result.findings):
        cp = finding.checkpoint
        if cp is None or "was changed" not in finding.message:
            continue
        below = max((s for s in holding if s < cp.seq), default=None)
        if below is not None:
            result.findings[i] = Finding(
                finding.source, finding.lineno,
                finding.message + f" The checkpoint of seq {below} still holds, so the change "
                f"lies in seq {below + 1}–{cp.seq}.", cp)


def _check_one(cp: Checkpoint, found: _Chain, cutoff: datetime, days: int) -> list[str]:
    problems: list[str] = []
    a_seq, a_digest = found.anchor
    if cp.anchor[0] == a_seq and cp.anchor[1] != a_digest:
        problems.append(f"the chain's anchor (seq {a_seq}) has digest {a_digest[:16]}…, but this "
                        f"checkpoint signed {cp.anchor[1][:16]}… for it: the pruned history "
                        "was rewritten.")
    elif cp.anchor[0] > a_seq:
        problems.append(f"the chain now starts after seq {a_seq}, but when this checkpoint was "
                        f"made receipts up to seq {cp.anchor[0]} had been pruned: the chain's "
                        "start was rewritten (or the tables restored from an older backup).")
    points = [("the newest receipt", cp.head)]
    if cp.first is not None and cp.first.seq != cp.head.seq:
        points.append(("the oldest receipt", cp.first))
    for what, point in points:
        problem = _check_point(what, point, found, cutoff, days)
        if problem:
            problems.append(problem)
    return problems


def _check_point(what: str, point: Point, found: _Chain, cutoff: datetime, days: int
                 ) -> str | None:
    a_seq, a_digest = found.anchor
    name = f"receipt seq {point.seq} ({what} when checkpointed"
    name += f", created {point.created_at})" if point.created_at else ")"
    if point.seq <= a_seq:  # gone: acceptable only as pruned
        if point.seq == a_seq and point.digest != a_digest:
            return (f"{name} is the chain's anchor now, but the anchor holds digest "
                    f"{a_digest[:16]}…, not the {point.digest[:16]}… this checkpoint signed: "
                    "the history before it was rewritten.")
        if point.created_at is not None and \
                datetime.fromisoformat(point.created_at[:-1]) >= cutoff:
            return (f"{name} is no longer kept (the chain's anchor is now at seq {a_seq}), "
                    f"but it is younger than the retention period ({days} days, "
                    "CONSENTKIT_RETENTION_DAYS): it was deleted, not pruned.")
        return None
    digest = found.digests.get(point.seq)
    if digest is None:
        if point.seq > found.last:
            head_seq = found.head[0] if found.head else None
            moved = (" and the head moved back to it" if head_seq is not None
                     and head_seq < point.seq else "")
            return (f"{name} is gone: the ledger now ends at seq {found.last}{moved}, so the "
                    "newest receipts were deleted.")
        return f"{name} is gone: it was deleted from the middle of the chain."
    if digest != point.digest:
        return (f"{name} now has digest {digest[:16]}…, not the {point.digest[:16]}… this "
                f"checkpoint signed: a receipt at or before seq {point.seq} was changed and "
                "the digests after it recomputed.")
    if point.seq > found.linked_upto:
        return (f"{name} still has the digest this checkpoint signed, but it is no longer on "
                f"the chain: the links from the anchor break at seq {found.break_at}.")
    return None
