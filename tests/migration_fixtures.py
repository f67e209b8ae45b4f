"""Pytest fixtures of the migration tests: empty databases of their own.

A test module gets them with ``pytest_plugins = ["migration_fixtures"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from migration_support import scratch_postgres_database


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty databases of the test's own: SQLite files, or databases
    on the PostgreSQL test server (dropped after the test)."""
    made: list[str] = []
    with ExitStack() as stack:

        def new() -> str:
            if request.param == "sqlite":
                url = f"sqlite:///{tmp_path / f'migrations{len(made)}.sqlite3'}"
            else:
                server: str = request.getfixturevalue("postgres_url")
                url = stack.enter_context(scratch_postgres_database(server))
            made.append(url)
            return url

        yield new


@pytest.fixture
def empty_db_url(new_database: Callable[[], str]) -> str:
    """An empty database of the test's own, on SQLite and on PostgreSQL."""
    return new_database()
