"""The writer's own SQL on PostgreSQL: values written as literals come back unchanged.

The writer sends each batch as one query string of literals (see
``store._write_batch_pg``); most values are quoted without asking libpq, and
these tests hold that shortcut to libpq's ``PQescapeLiteral`` and to what the
server reads back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flask_consentkit.ledger import store

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module", params=["on", "off"],
                ids=lambda value: f"standard_conforming_strings={value}")
def connection(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[Any]:
    import psycopg
    from sqlalchemy.engine import make_url

    conn = psycopg.connect(make_url(postgres_url).set(drivername="postgresql").render_as_string(
        hide_password=False), autocommit=True)
    try:
        # off: backslashes in plain quotes are escapes (a server set up the old way)
        conn.execute(f"SET standard_conforming_strings = {request.param}")
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="module")
def postgres_url() -> str:  # the shared fixture's, at the connection's scope
    url = os.environ.get("CONSENTKIT_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CONSENTKIT_TEST_POSTGRES_URL is not set (e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it")
    return url


_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                max_size=40)


@settings(max_examples=300, deadline=None)
@given(value=_TEXT)
@example("it's")
@example("back\\slash")
@example("/stories/ağ?x=1")
@example("203.0.113.0")
@example("")
def test_a_text_literal_is_libpqs_and_reads_back_unchanged(connection: Any, value: str) -> None:
    from psycopg import pq

    literal = store._pg_literal(connection)
    encoding = connection.info.encoding
    escaped = pq.Escaping(connection.pgconn).escape_literal(value.encode(encoding)).decode(encoding)
    assert literal(value) == escaped
    assert connection.execute(f"SELECT {literal(value)}::text").fetchone()[0] == value


def test_other_values_read_back_as_written(connection: Any) -> None:
    literal = store._pg_literal(connection)
    when = datetime(2026, 12, 1, 22, 5, 7, 123456)
    row = connection.execute(f"SELECT {literal(None)}::text, {literal(42)}::bigint, "
                             f"{literal(when)}::timestamp").fetchone()
    assert row == (None, 42, when)
