"""Paths given by a user: files to read and folders to write, checked before any work.

A file is read only when it is a regular file of bounded size (a FIFO would
hang, /dev/zero would read without end); an output folder must exist or be
creatable, and be writable. Each failure is a HwnasError of one line.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from hwnas.errors import HwnasError

# A checkpoint or a table may be large, never unbounded.
MAX_DATA_FILE_BYTES = 16 << 30


def shown_path(text: str) -> str:
    """A path as an error message shows it: an over-long one is cut."""
    return text if len(text) <= 200 else text[:200] + "..."


def _stat(text: str, what: str, kind: str) -> os.stat_result:
    """``os.stat`` of a path argument, every failure as one HwnasError naming the expected ``kind``."""
    if not text or "\0" in text:
        raise HwnasError(f"{what} {shown_path(text)!r} is empty or holds a NUL; expected a {kind} path")
    try:
        return os.stat(text)
    except FileNotFoundError:
        raise HwnasError(f"{what} {shown_path(text)} does not exist; expected an existing {kind}") from None
    except OSError as err:
        raise HwnasError(f"{what} {shown_path(text)}: {err.strerror or err}; expected an existing {kind}") from None


def check_input_file(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_DATA_FILE_BYTES) -> Path:
    """``path`` as a regular file of at most ``max_bytes``: never a FIFO, a device or a folder (which would
    hang or read without end); else HwnasError."""
    text = os.fspath(path)
    info = _stat(text, what, "file")
    if not stat.S_ISREG(info.st_mode):
        raise HwnasError(f"{what} {shown_path(text)} is not a regular file; expected a file")
    if info.st_size > max_bytes:
        raise HwnasError(f"{what} {shown_path(text)} holds {info.st_size} bytes; expected at most {max_bytes}")
    return Path(text)


def check_input_dir(path: str | os.PathLike, what: str = "folder") -> Path:
    """``path`` as an existing folder; else HwnasError (also for a name too long to look up)."""
    text = os.fspath(path)
    info = _stat(text, what, "folder")
    if not stat.S_ISDIR(info.st_mode):
        raise HwnasError(f"{what} {shown_path(text)} is not a folder; expected an existing folder")
    return Path(text)


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a folder that exists or can be created, and that can be written; else HwnasError.

    Nothing is left behind: the nearest existing folder is probed with a temporary folder, which is removed.
    """
    text = os.fspath(path)
    if not text.strip() or "\0" in text:
        raise HwnasError(f"{what} {shown_path(text)!r} is empty or holds a NUL; expected a folder path")
    target = Path(text)
    existing = target
    try:
        while not existing.exists():
            if existing.is_symlink():
                raise HwnasError(f"{what} {shown_path(text)}: {existing} is a broken symbolic link; expected a folder")
            existing = existing.parent
        if not existing.is_dir():
            where = "is" if existing == target else f"lies under {existing}, which is"
            raise HwnasError(f"{what} {shown_path(text)} {where} not a folder; expected a folder path")
        os.rmdir(tempfile.mkdtemp(prefix=".hwnas-probe-", dir=existing))
    except OSError as err:
        raise HwnasError(f"{what} {shown_path(text)} cannot be created or written ({err.strerror or err}); expected a "
                         "writable folder path") from None
    return target
