"""SQLite persistence: one file per node, WAL, and a write is durable before it is answered.

`synchronous=FULL` makes every committed transaction survive a SIGKILL or power cut; handlers
answer only after `transaction()` has committed, so an acknowledged write is never lost.
`BEGIN IMMEDIATE` takes the write lock up front, which is what keeps serial allocation and
capacity accounting free of races between concurrent requests.

Each API module declares its own tables with `schema(ddl)` at import time, and with
`upgrade(step)` how a file an older node wrote gains what they added since, so the store
knows no entity and a class can be read in one file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMAS: list[str] = []
Upgrade = Callable[[sqlite3.Connection], None]
_UPGRADES: list[Upgrade] = []


def schema(ddl: str) -> None:
    """Declare tables (idempotent DDL: CREATE ... IF NOT EXISTS) that every store creates."""
    _SCHEMAS.append(ddl)


def upgrade(step: Upgrade) -> Upgrade:
    """Declare a step that brings a file written by an older node up to date. It runs in one
    transaction at every opening, after the DDL, so it checks for itself whether it is due."""
    _UPGRADES.append(step)
    return step


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
        with self.transaction() as db:
            for step in _UPGRADES:
                step(db)

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
