"""Atomic files and one writer per folder: nothing hwnas writes ever exists half-written.

Every writer puts the bytes in a temporary file in the target's folder, flushes
and fsyncs it, then renames it over the target (``os.replace`` is atomic on
POSIX), so a ``kill -9`` at any moment leaves either the old or the new file.
A command that writes a folder over a long time holds :func:`folder_lock` on it,
an advisory lock the operating system releases when the process ends, however
it ends; a second writer is refused instead of mixing its files with the first's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from hwnas.errors import HwnasError

LOCK = ".lock"


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = True) -> None:
    """Call ``write(file)`` on a temporary file, then move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """The temporary files :func:`atomic_write` of files ``names`` left in ``folder`` when killed mid-write.

    Only meaningful under :func:`folder_lock`: without it they may be another writer's live files.
    """
    return sorted(p for name in names for p in Path(folder).glob(f".{name}.*.tmp") if p.is_file())


@contextmanager
def folder_lock(folder: str | os.PathLike, option: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (made if missing) while the block runs.

    ``fcntl.flock`` on ``folder/.lock``: the lock belongs to the open file, so the
    operating system drops it when the process exits or is killed. HwnasError
    (one line, naming ``option``) if another process holds it or the folder
    cannot be written. The ``.lock`` file stays; it is empty apart from the
    holder's pid, and an unheld one means nothing.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK, "a+")
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise HwnasError(f"{option} {folder}: cannot write there ({reason}); expected a writable folder") from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise HwnasError(f"{option} {folder}: cannot lock it ({err.strerror}); expected a folder on a "
                                 "file system with file locks") from None
            handle.seek(0)
            holder = handle.read().strip()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise HwnasError(f"{option} {folder} is being written by {who}; expected one writer per folder: "
                             "wait for it to end or choose another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield folder
