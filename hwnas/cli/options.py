"""The argument types every command shares: bounded numbers, seeds, devices, output folders, input files.

Each refuses a bad value at parse time, before any work, in one line that
states what was expected (click turns it into a usage error, exit status 2).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import click

from hwnas.errors import HwnasError
from hwnas.files import MAX_DATA_FILE_BYTES, check_input_dir, check_input_file, check_output_dir

# What a proxy, a search or an export runs at: beyond these no machine has the memory.
MAX_BATCH = 4096
MAX_RESOLUTION = 4096
MAX_REPEAT = 1000
MAX_SEED = 2**32 - 1  # numpy's and every library's common range


def _ascii_number(value, param, ctx, kind: str) -> str | None:
    """The text of a command-line number (None when click passes a value that is already one)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text.isascii():
        raise click.BadParameter(f"{value!r} is not a number; expected {kind} written in ASCII digits", ctx, param)
    return text


class BoundedInt(click.IntRange):
    """An integer in ``[min, max]`` written in ASCII digits (Python's int() also reads other scripts' digits)."""

    name = "integer"

    def __init__(self, min: int | None = None, max: int | None = None):
        super().__init__(min=min, max=max)

    def convert(self, value, param, ctx):
        text = _ascii_number(value, param, ctx, "an integer")
        if text is not None and len(text) > 40:
            self.fail(f"{text[:20]}... is out of range; expected {self._describe_range()}", param, ctx)
        return super().convert(value if text is None else text, param, ctx)


class BoundedFloat(click.FloatRange):
    """A finite number in a range (``nan`` and ``inf`` are refused, which click's FloatRange lets through)."""

    name = "number"

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False):
        super().__init__(min=min, max=max, min_open=min_open, max_open=max_open)

    def convert(self, value, param, ctx):
        text = _ascii_number(value, param, ctx, "a number")
        number = super().convert(value if text is None else text, param, ctx)
        if not math.isfinite(number):  # nan passes every range comparison
            self.fail(f"{number} is not a finite number; expected {self._describe_range()}", param, ctx)
        return number


BATCH = BoundedInt(1, MAX_BATCH)
RESOLUTION = BoundedInt(1, MAX_RESOLUTION)
REPEAT = BoundedInt(1, MAX_REPEAT)
SEED = BoundedInt(0, MAX_SEED)


class NonEmpty(click.ParamType):
    """A name that may not be empty (an empty --profile would silently mean the default)."""

    name = "text"

    def __init__(self, what: str):
        self.what = what

    def convert(self, value, param, ctx):
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            self.fail(f"{value!r} is empty or not text; expected {self.what}", param, ctx)
        return value


class Device(click.ParamType):
    """A torch device present on this machine: cpu, cuda or cuda:N (N below the number of GPUs)."""

    name = "device"

    def convert(self, value, param, ctx):
        if value == "cpu":
            return value
        expected = "cpu, cuda or cuda:N for a GPU of this machine"
        import torch

        try:
            device = torch.device(value)
        except (RuntimeError, ValueError, TypeError):
            self.fail(f"{value!r} is not a torch device; expected {expected}", param, ctx)
        if device.type == "cpu":
            return value
        if device.type != "cuda":
            self.fail(f"{value!r}: hwnas runs on cpu or cuda, not {device.type}; expected {expected}", param, ctx)
        try:
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception:  # a broken driver is no GPU
            count = 0
        if count == 0:
            self.fail(f"{value!r}: this machine has no usable CUDA GPU; expected {expected}", param, ctx)
        if device.index is not None and device.index >= count:
            self.fail(f"{value!r}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}", param, ctx)
        return value


class _Checked(click.ParamType, ABC):
    """A path argument checked at parse time by :meth:`check`, whose HwnasError becomes the usage error."""

    @abstractmethod
    def check(self, value) -> None:
        """Raise HwnasError naming what is wrong with ``value``."""

    def convert(self, value, param, ctx):
        try:
            self.check(value)
        except HwnasError as err:
            self.fail(str(err), param, ctx)
        return value


class OutputDir(_Checked):
    """A folder to write into, checked at parse time (see :func:`check_output_dir`)."""

    name = "folder"

    def check(self, value) -> None:
        check_output_dir(value, "folder")


class InputFile(_Checked):
    """An existing regular file of bounded size, checked at parse time (see :func:`check_input_file`)."""

    name = "file"

    def __init__(self, max_bytes: int = MAX_DATA_FILE_BYTES):
        self.max_bytes = max_bytes

    def check(self, value) -> None:
        check_input_file(value, "file", self.max_bytes)


class OutputFile(_Checked):
    """A file to write: not a folder, in a folder that exists or can be created and is writable."""

    name = "file"

    def check(self, value) -> None:
        import os
        from pathlib import Path

        if not isinstance(value, str) or not value.strip() or os.path.isdir(value):
            raise HwnasError(f"{value!r} is empty or a folder; expected a file path")
        check_output_dir(Path(value).parent, "folder of")


class InputDir(_Checked):
    """An existing folder, checked at parse time (see :func:`hwnas.files.check_input_dir`)."""

    name = "folder"

    def check(self, value) -> None:
        check_input_dir(value)


class RayAddress(click.ParamType):
    """A Ray cluster address: ``auto`` or ``[ray://]host:port`` (the connection itself is tried before the search
    starts)."""

    name = "address"

    def convert(self, value, param, ctx):
        import re

        text = value.strip() if isinstance(value, str) else ""
        m = re.fullmatch(r"(?:ray://)?([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):([0-9]{1,5})", text)
        if text != "auto" and (m is None or not 1 <= int(m.group(2)) <= 65535):
            self.fail(f"{value!r} is not a Ray address; expected 'auto' or host:port (e.g. 10.0.0.5:6379)", param, ctx)
        return text

