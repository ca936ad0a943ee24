"""Opening an Optuna storage for ``hwnas tune``: checked and connected to before the first trial.

SQLite (``sqlite:///path/tune.db``, one machine) and PostgreSQL
(``postgresql://user@host:port/db``, many machines, needs the [postgres]
extra). Workers started at once on a fresh PostgreSQL database would race on
creating Optuna's tables (one dies with a unique violation on
``studydirection``): the schema is created under a PostgreSQL advisory lock,
so exactly one worker creates it and the others find it. Every storage gets a
heartbeat, so a trial whose process was killed is marked FAILED by the next
worker that starts a trial (Optuna's ``fail_stale_trials``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from hwnas.errors import HwnasError

SCHEMES = ("sqlite", "postgresql")
SCHEMA_LOCK = 0x68776E6173  # the advisory lock key ("hwnas") held while one worker creates the schema


def _one_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def check_url(url: str) -> str:
    """The URL to open (with its driver named); HwnasError naming what is wrong with it otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise HwnasError("--storage is empty; expected e.g. sqlite:///runs/tune/tune.db or "
                         "postgresql://user@host:5432/db")
    scheme = _scheme(url)
    if scheme not in SCHEMES:
        raise HwnasError(f"--storage {url[:100]!r}: unsupported URL; expected sqlite:///PATH or "
                         "postgresql://USER@HOST:PORT/DB")
    if scheme == "sqlite":
        path = url.split("://", 1)[1]
        if not path.startswith("/") or path in ("/", "/:memory:") or path.endswith("/"):
            raise HwnasError(f"--storage {url!r}: expected a database file, sqlite:///relative/path.db or "
                             "sqlite:////absolute/path.db (an in-memory study would save nothing)")
        folder = Path(path[1:]).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise HwnasError(f"--storage {url!r}: folder {str(folder) or '.'} does not exist or is not writable")
    else:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            raise HwnasError("--storage postgresql://... needs psycopg2: pip install 'hwnas[postgres]'") from None
        if url.lower().startswith("postgresql://"):  # SQLAlchemy's default driver may be another one
            url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def open_storage(url: str, heartbeat_s: int = 30):
    """An Optuna RDBStorage at ``url`` with a heartbeat, its schema created once; one line on any failure."""
    import optuna
    import sqlalchemy

    url = check_url(url)
    scheme = _scheme(url)
    engine_kwargs = {"connect_args": {"connect_timeout": 10}} if scheme == "postgresql" else {}
    try:
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
        with engine.connect() as conn, warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            if scheme == "postgresql":
                conn.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({SCHEMA_LOCK})"))
            try:
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                                     grace_period=3 * heartbeat_s)
            finally:
                if scheme == "postgresql":
                    conn.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({SCHEMA_LOCK})"))
        engine.dispose()
    except HwnasError:
        raise
    except Exception as err:  # sqlalchemy / driver / optuna errors all mean: this storage cannot be used
        raise HwnasError(f"--storage {url[:100]}: cannot open it ({_one_line(err)}); expected a reachable "
                         "database the user may write") from None
    return storage
