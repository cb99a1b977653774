"""The receipts table (SQLAlchemy Core), shared by the ledger and the reports.

One row per decision. Rows are only ever appended; erasure nulls the personal
columns (``consent_id``, ``page_path``, ``ip_prefix``, ``country``, and the
``personal_salt`` that hides them) and keeps the digests, so the hash chain
still verifies (see :mod:`flask_consentkit.ledger.chain`).

Category lists (``granted``, ``denied``, ``withdrawn``) are stored as sorted
keys wrapped in commas — ``",analytics,performance,"``, or ``","`` for none —
so that SQL can test membership exactly with ``LIKE '%,analytics,%'`` on every
store.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

#: Bumped whenever the tables change; recorded in ``consentkit_meta``. Version 2: on
#: PostgreSQL, :data:`visitor_index` replaces the plain ``consent_id`` index and
#: :data:`created_at_index` carries the columns the report counts. Version 3: the
#: ``rule`` column (the rule per audience applied, ``CONSENTKIT_REGIONS``) and the
#: ``consentkit_notices`` table (the notices receipts name).
SCHEMA_VERSION = 3

#: the width of the category-list columns (``granted``, ``denied``, ``withdrawn``): every
#: category key of the app, encoded (:func:`encode_categories`), must fit
CATEGORY_LIST_LENGTH = 512

metadata = MetaData()

receipts = Table(
    "consentkit_receipts",
    metadata,
    # chain order; assigned by the ledger under its write lock, never reused
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=False),
    Column("receipt_id", String(36), nullable=False, unique=True),  # UUIDv4
    Column("consent_id", String(64), nullable=True),  # nulled on erasure
    Column("created_at", DateTime(timezone=False), nullable=False),  # UTC
    # accept_all | reject_all | save | erase
    Column("action", String(16), nullable=False),
    Column("granted", String(CATEGORY_LIST_LENGTH), nullable=False),
    Column("denied", String(CATEGORY_LIST_LENGTH), nullable=False),
    # categories the decision took back from an earlier grant (a withdrawal)
    Column("withdrawn", String(CATEGORY_LIST_LENGTH), nullable=False, default=","),
    Column("policy_version", String(64), nullable=False),
    Column("banner_hash", String(64), nullable=True),  # sha256 hex of the text shown
    Column("language", String(16), nullable=True),
    # banner | preferences | api | gpc
    Column("method", String(16), nullable=False),
    Column("page_path", String(512), nullable=True),
    Column("previous_receipt_id", String(36), nullable=True),
    Column("ip_prefix", String(64), nullable=True),  # only with analytics, anonymised
    Column("country", String(2), nullable=True),  # only with analytics
    # the rule per audience applied (CONSENTKIT_REGIONS), e.g. "eu", "ru"; NULL before
    # schema version 3. Not personal: it names a rule, not the visitor's country
    Column("rule", String(32), nullable=True),
    Column("erased_at", DateTime(timezone=False), nullable=True),
    # random salt of the personal-fields commitment; nulled on erasure
    Column("personal_salt", String(32), nullable=True),
    # sha256 commitment to (salt, consent_id, page_path, ip_prefix, country); kept
    Column("personal_digest", String(64), nullable=False, default=""),
    Column("digest", String(64), nullable=False),
    Column("prev_digest", String(64), nullable=False),
)

#: Receipts by time (pruning, the report's window). On PostgreSQL it also
#: carries what ``flask consent report`` counts of each receipt, so that the
#: counts read this index alone (an index-only scan of the window) instead of
#: the table's far wider rows.
created_at_index = Index(
    "ix_consentkit_receipts_created_at", receipts.c.created_at,
    postgresql_include=["action", "method", "policy_version", "withdrawn"],
)

#: A visitor's receipts, latest first. SQLite's index on ``consent_id`` holds
#: ``seq`` already (it is the rowid).
Index("ix_consentkit_receipts_consent_id", receipts.c.consent_id).ddl_if(dialect="sqlite")

#: On PostgreSQL the same lookups, through an index that also carries what
#: ``flask consent report`` needs of each receipt, so that it finds every
#: visitor's latest decision by reading this index alone (an index-only scan,
#: in visitor order) instead of sorting the whole window.
visitor_index = Index(
    "ix_consentkit_receipts_consent_id_seq", receipts.c.consent_id, receipts.c.seq.desc(),
    postgresql_include=["created_at", "action", "granted", "denied"],
).ddl_if(dialect="postgresql")

#: What browsers were stopped from reaching: aggregates of the policy's violation
#: reports, one row per blocked host, directive and page path (no query). No IP,
#: user agent, cookie or query string is ever stored.
violations = Table(
    "consentkit_csp_violations",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("directive", String(40), primary_key=True),
    Column("path", String(512), primary_key=True),
    Column("count", BigInteger(), nullable=False),
    Column("first_seen", DateTime(timezone=False), nullable=False),  # UTC
    Column("last_seen", DateTime(timezone=False), nullable=False),  # UTC
)

#: Each notice a visitor decided under, once, by the SHA-256 of its canonical JSON
#: (see :mod:`flask_consentkit.ledger.notices`); a receipt names it in ``banner_hash``.
notices = Table(
    "consentkit_notices",
    metadata,
    Column("notice_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=False), nullable=False),  # UTC
    Column("content", Text(), nullable=False),  # canonical JSON
)

meta = Table(
    "consentkit_meta",
    metadata,
    # "schema_version"; "head" and "anchor" ("<seq>:<digest>") of the hash chain
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)


def encode_categories(keys: Iterable[str]) -> str:
    """``{"b", "a"}`` → ``",a,b,"``; no keys → ``","``."""
    return "," + "".join(f"{k}," for k in sorted(set(keys)))


def decode_categories(value: str | None) -> list[str]:
    """The inverse of :func:`encode_categories`."""
    return [k for k in (value or "").split(",") if k]
