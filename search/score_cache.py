"""An on-disk cache of proxy scores, shared by the searches of a tuning run.

A proxy evaluation is a pure function of the proxy's settings (name, options,
batch size, repeats, resolution, dtype and the seed it is given) and the
architecture's canonical text: the seed comes from the run seed and the text
only (``hwnas.search.workers.candidate_seed``). So a score computed once can be
reused by every later search with the same settings and run seed, e.g. every
trial of ``hwnas tune`` (its search seeds are the same in every trial). A
hybrid expression scores each named component through the cache, so changing
only its coefficients costs nothing. A proxy that cannot score a network is
cached too (its ProxyError message), so the rejection is repeated, not the work.

What the key leaves out: the thread count, which changes float sums by up to
~1e-4 relative (docs/proxies.md); a cache filled with another thread count
gives scores that differ by that much from a fresh evaluation.

The cache is one SQLite file (several processes may share it); ``use`` makes
one active in this process for the duration of a ``with`` block.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from hwnas.errors import HwnasError

_ACTIVE: "ScoreCache | None" = None


class ScoreCache:
    """Scores by (proxy settings, space, architecture text); the value, its parts, or the reason it failed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value REAL, parts TEXT, "
                            "error TEXT)")
        except sqlite3.Error as err:
            raise HwnasError(f"score cache {self.path}: {err}; expected a writable SQLite file") from None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(settings: dict, space_name: str, text: str) -> str:
        return json.dumps([settings, space_name, text], sort_keys=True, default=str)

    def get(self, key: str) -> tuple[float | None, dict, str | None] | None:
        row = self.db.execute("SELECT value, parts, error FROM scores WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return row[0], json.loads(row[1]), row[2]

    def put(self, key: str, value: float | None, parts: dict, error: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", (key, value, json.dumps(parts), error))

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def active() -> ScoreCache | None:
    return _ACTIVE


@contextmanager
def use(cache: ScoreCache | None):
    """Make ``cache`` the one proxy scores go through in this process (None: no cache) inside the block."""
    global _ACTIVE
    before, _ACTIVE = _ACTIVE, cache
    try:
        yield cache
    finally:
        _ACTIVE = before
