"""SQLite persistence: one file per node, WAL, and a write is durable before it is answered.

`synchronous=FULL` makes every committed transaction survive a SIGKILL or power cut; handlers
answer only after `transaction()` has committed, so an acknowledged write is never lost.
`BEGIN IMMEDIATE` takes the write lock up front, which is what keeps serial allocation and
capacity accounting free of races between concurrent requests.

Each API module declares its own tables with `schema(ddl)` at import time, so the store knows
no entity and a class can be read in one file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMAS: list[str] = []


def schema(ddl: str) -> None:
    """Declare tables (idempotent DDL: CREATE ... IF NOT EXISTS) that every store creates."""
    _SCHEMAS.append(ddl)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            self._db.execute(f"PRAGMA {pragma}")
        for ddl in _SCHEMAS:
            self._db.executescript(ddl)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit of work; rolled back if the block raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def row(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
            return row

    def close(self) -> None:
        with self._lock:
            self._db.close()
