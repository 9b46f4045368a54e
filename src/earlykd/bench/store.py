"""Results store: one SQLite row per finished run, written in one transaction (standard library only)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ..errors import EarlykdError, check
from ..schema import COLUMNS, INTEGER, KEY, OPTIONAL, PROTOCOL, REAL, STUDENT_ONLY  # noqa: F401 (re-exported)


def required(row: dict) -> list[str]:
    """Columns a complete row must fill (teachers have no fidelity)."""
    skip = OPTIONAL | (STUDENT_ONLY if row.get("method") == "teacher" else set())
    return [c for c in COLUMNS if c not in skip]


def _type(column: str) -> str:
    return "INTEGER" if column in INTEGER else "REAL" if column in REAL else "TEXT"


class Store:
    def __init__(self, path: str | Path, create: bool = True):
        """create = False: an existing database, read only (a report never writes to it)."""
        self.path = Path(path)
        check(create or self.path.is_file(), f"results database not found: {self.path}")
        try:
            if create:
                self.conn = sqlite3.connect(self.path, timeout=60)
                columns = ", ".join(f"{c} {_type(c)}" for c in COLUMNS)
                with self.conn:
                    self.conn.execute(f"CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, {columns}, "
                                      f"UNIQUE ({', '.join(KEY)}))")
            else:
                self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
        except sqlite3.Error as exc:
            raise EarlykdError(f"{self.path}: cannot open results database ({exc})") from None
        missing = [c for c in COLUMNS if c not in have]
        check(not missing, f"{self.path}: not an earlykd results database (" + (
            "no runs table" if not have else f"its runs table lacks {', '.join(missing[:5])}") + ")")

    def keys(self) -> set[tuple]:
        return set(self.conn.execute(f"SELECT {', '.join(KEY)} FROM runs"))

    def insert(self, row: dict) -> bool:
        """Insert a complete row atomically; False if its key is already stored."""
        missing = [c for c in required(row) if row.get(c) is None]
        check(not missing, f"incomplete result row for {row.get('dataset')}/{row.get('method')}: "
                           f"no {', '.join(missing)}")
        values = [json.dumps(row[c], default=str) if isinstance(row.get(c), (dict, list)) else row.get(c)
                  for c in COLUMNS]
        with self.conn:  # one transaction: the row is stored whole or not at all
            cur = self.conn.execute(f"INSERT OR IGNORE INTO runs ({', '.join(COLUMNS)}) "
                                    f"VALUES ({', '.join('?' * len(COLUMNS))})", values)
        return cur.rowcount == 1

    def rows(self) -> list[dict]:
        cur = self.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY id")
        return [dict(zip(COLUMNS, r)) for r in cur]

    def close(self) -> None:
        self.conn.close()
