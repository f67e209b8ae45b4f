"""Counting the SQL statements and commits a piece of work sends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_WRITES = frozenset({"INSERT", "UPDATE", "DELETE"})


@dataclass
class SQLLog:
    statements: list[str] = field(default_factory=list)
    commits: int = 0

    @property
    def writes(self) -> int:
        return sum(1 for s in self.statements if s.lstrip().split(None, 1)[0].upper() in _WRITES)


@contextmanager
def sql_log(*engines: Engine) -> Iterator[SQLLog]:
    """What is sent on ``engines`` inside the ``with`` block."""
    log = SQLLog()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        log.statements.append(statement)

    def commit(_conn: Any) -> None:
        log.commits += 1

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
        event.listen(engine, "commit", commit)
    try:
        yield log
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
            event.remove(engine, "commit", commit)
