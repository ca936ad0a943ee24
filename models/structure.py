"""ZenNAS structure strings: a small immutable value that parses, prints, hashes and compares.

Grammar (see the reference README of the ZenNet zoo)::

    structure := block+
    block     := NAME "(" int ("," int)* ")"

Block names and arguments:

=========================  ===================================  =====================
name                       arguments                            values
=========================  ===================================  =====================
``SuperConvK{k}BNRELU``    ``(in, out, stride, L)``             k in {1, 3, 5, 7}
``SuperResK{k}K{k}``       ``(in, out, stride, mid, L)``        k in {3, 5, 7}
``SuperResK1K{k}K1``       ``(in, out, stride, mid, L)``        k in {3, 5, 7}
``SuperResIDWE{e}K{k}``    ``(in, out, stride, mid, L)``        e in {1, 2, 4, 6}, k in {3, 5, 7}
=========================  ===================================  =====================

``parse(str(s)) == s`` for every structure. A malformed string raises
:class:`hwnas.errors.StructureError` naming the character position and what
was expected; nothing else escapes the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable

from hwnas.errors import HwnasError, StructureError

CONV = "conv"  # SuperConvK{k}BNRELU: plain conv-BN-ReLU layers
BASIC = "basic"  # SuperResK{k}K{k}: basic residual units (ResNet-18 style)
BOTTLENECK = "bottleneck"  # SuperResK1K{k}K1: bottleneck units (ResNet-50 style), two per sub-layer
INVERTED = "inverted"  # SuperResIDWE{e}K{k}: inverted residual units (MobileNetV2 style), two per sub-layer

KERNELS = {CONV: (1, 3, 5, 7), BASIC: (3, 5, 7), BOTTLENECK: (3, 5, 7), INVERTED: (3, 5, 7)}
EXPANSIONS = (1, 2, 4, 6)
STRIDES = (1, 2)
# Limits that keep every parsed structure buildable; the zoo's widest tensor has 6,704 channels.
MAX_CHANNELS = 8192
MAX_SUB_LAYERS = 64
MAX_BLOCKS = 128

_NAME_PATTERNS = (
    (re.compile(r"SuperConvK(\d+)BNRELU\Z"), CONV),
    (re.compile(r"SuperResK1K(\d+)K1\Z"), BOTTLENECK),
    (re.compile(r"SuperResIDWE(\d+)K(\d+)\Z"), INVERTED),
    (re.compile(r"SuperResK(\d+)K(\d+)\Z"), BASIC),
)
_EXPECTED_NAMES = (
    "SuperConvK{1,3,5,7}BNRELU, SuperResK{3,5,7}K{3,5,7} (same k twice), "
    "SuperResK1K{3,5,7}K1 or SuperResIDWE{1,2,4,6}K{3,5,7}"
)


@dataclass(frozen=True, order=True)
class Block:
    """One block of a structure string.

    ``mid`` is the bottleneck width (``None`` for plain conv blocks);
    ``expansion`` is set only for inverted-residual blocks.
    """

    kind: str
    kernel: int
    in_channels: int
    out_channels: int
    stride: int
    sub_layers: int
    mid: int | None = None
    expansion: int | None = None

    # The hash is computed once (blocks are dictionary keys on hot paths). It is per process (str hashes
    # are randomized), so it never travels: a pickled or copied block is rebuilt from its fields
    # (__reduce__) and hashes itself again.
    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.kind, self.kernel, self.in_channels, self.out_channels,
                                                self.stride, self.sub_layers, self.mid, self.expansion)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self):
        return (Block, (self.kind, self.kernel, self.in_channels, self.out_channels, self.stride,
                        self.sub_layers, self.mid, self.expansion))

    @property
    def name(self) -> str:
        k = self.kernel
        if self.kind == CONV:
            return f"SuperConvK{k}BNRELU"
        if self.kind == BASIC:
            return f"SuperResK{k}K{k}"
        if self.kind == BOTTLENECK:
            return f"SuperResK1K{k}K1"
        return f"SuperResIDWE{self.expansion}K{k}"

    @property
    def args(self) -> tuple[int, ...]:
        if self.kind == CONV:
            return (self.in_channels, self.out_channels, self.stride, self.sub_layers)
        return (self.in_channels, self.out_channels, self.stride, self.mid, self.sub_layers)

    @property
    def is_residual(self) -> bool:
        return self.kind != CONV

    def __str__(self) -> str:
        return f"{self.name}({','.join(str(a) for a in self.args)})"

    def with_(self, **changes) -> "Block":
        """A copy with some fields changed (the value itself never changes)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Structure:
    """A whole network trunk: the blocks in order, channels chained."""

    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))

    @classmethod
    def parse(cls, text: str) -> "Structure":
        return parse(text)

    def __str__(self) -> str:
        return "".join(str(b) for b in self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self):
        return iter(self.blocks)

    @property
    def in_channels(self) -> int:
        return self.blocks[0].in_channels

    @property
    def out_channels(self) -> int:
        return self.blocks[-1].out_channels

    def replace_block(self, index: int, block: Block) -> "Structure":
        blocks = list(self.blocks)
        blocks[index] = block
        return Structure(tuple(blocks))


def _block_from(name: str, args: list[int], text: str, name_pos: int, arg_pos: list[int]) -> Block:
    kind = None
    for pattern, candidate in _NAME_PATTERNS:
        m = pattern.match(name)
        if m:
            kind, groups = candidate, [int(g) for g in m.groups()]
            break
    if kind is None:
        raise StructureError(f"unknown block {name!r}; expected one of {_EXPECTED_NAMES}", text, name_pos)
    expansion = None
    if kind == BASIC:
        if groups[0] != groups[1]:
            raise StructureError(
                f"block {name!r} has two different kernels; expected SuperResK{{k}}K{{k}} with k in {{3,5,7}}",
                text, name_pos)
        kernel = groups[0]
    elif kind == INVERTED:
        expansion, kernel = groups
        if expansion not in EXPANSIONS:
            raise StructureError(
                f"block {name!r} has expansion {expansion}; expected one of {EXPANSIONS}", text, name_pos)
    else:
        kernel = groups[0]
    if kernel not in KERNELS[kind]:
        raise StructureError(
            f"block {name!r} has kernel {kernel}; expected one of {KERNELS[kind]}", text, name_pos)

    arity = 4 if kind == CONV else 5
    if len(args) != arity:
        names = "(in,out,stride,L)" if kind == CONV else "(in,out,stride,mid,L)"
        raise StructureError(
            f"block {name!r} takes {arity} arguments {names}, got {len(args)}", text, name_pos + len(name))
    labels = ["in", "out", "stride", "L"] if kind == CONV else ["in", "out", "stride", "mid", "L"]
    for label, value, pos in zip(labels, args, arg_pos):
        if label == "stride":
            if value not in STRIDES:
                raise StructureError(f"stride {value}; expected 1 or 2", text, pos)
        elif label == "L":
            if not 1 <= value <= MAX_SUB_LAYERS:
                raise StructureError(f"sub-layer count {value}; expected 1..{MAX_SUB_LAYERS}", text, pos)
        elif not 1 <= value <= MAX_CHANNELS:
            raise StructureError(f"{label} channels {value}; expected 1..{MAX_CHANNELS}", text, pos)
    if kind == CONV:
        cin, cout, stride, layers = args
        return Block(CONV, kernel, cin, cout, stride, layers)
    cin, cout, stride, mid, layers = args
    return Block(kind, kernel, cin, cout, stride, layers, mid, expansion)


_TOKEN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_TOKEN_INT = re.compile(r"-?[0-9]+")  # ASCII digits only: int() would also read fullwidth or Arabic-Indic ones


def parse(text: str) -> Structure:
    """Parse a ZenNAS structure string; raise StructureError with a position on any fault."""
    if not isinstance(text, str):
        raise StructureError(f"expected a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise StructureError("empty string; expected at least one block such as SuperConvK3BNRELU(3,32,2,1)",
                             text, 0)
    blocks: list[Block] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_NAME.match(text, pos)
        if not m:
            raise StructureError(f"unexpected {text[pos]!r}; expected a block name", text, pos)
        name, name_pos = m.group(0), pos
        pos = m.end()
        if pos >= n or text[pos] != "(":
            got = repr(text[pos]) if pos < n else "end of string"
            raise StructureError(f"expected '(' after {name!r}, got {got}", text, pos)
        pos += 1
        args: list[int] = []
        arg_pos: list[int] = []
        while True:
            m = _TOKEN_INT.match(text, pos)
            if not m:
                got = repr(text[pos]) if pos < n else "end of string"
                raise StructureError(f"expected an integer argument of {name!r}, got {got}", text, pos)
            if len(m.group(0)) > 9:
                raise StructureError(f"number {m.group(0)[:12]}... is out of range", text, pos)
            args.append(int(m.group(0)))
            arg_pos.append(pos)
            pos = m.end()
            if pos < n and text[pos] == ",":
                pos += 1
                continue
            if pos < n and text[pos] == ")":
                pos += 1
                break
            got = repr(text[pos]) if pos < n else "end of string"
            raise StructureError(f"expected ',' or ')' in the arguments of {name!r}, got {got}", text, pos)
        block = _block_from(name, args, text, name_pos, arg_pos)
        if blocks and block.in_channels != blocks[-1].out_channels:
            raise StructureError(
                f"block {len(blocks)} ({name}) takes {block.in_channels} input channels but the previous "
                f"block outputs {blocks[-1].out_channels}; expected in == previous out", text, arg_pos[0])
        blocks.append(block)
        if len(blocks) > MAX_BLOCKS:
            raise StructureError(f"more than {MAX_BLOCKS} blocks", text, name_pos)
    return Structure(tuple(blocks))


def chain(blocks: Iterable[Block]) -> Structure:
    """Build a structure from blocks, re-wiring each block's input to the previous output."""
    out: list[Block] = []
    for b in blocks:
        if out and b.in_channels != out[-1].out_channels:
            b = b.with_(in_channels=out[-1].out_channels)
        out.append(b)
    return Structure(tuple(out))


# An architecture file holds one line of text; a larger file is not one (and is not read into memory).
MAX_ARCH_FILE_BYTES = 1 << 20


def read_first_line(path) -> str:
    """The first non-empty line of a file that holds an architecture string (a regular file of at most
    :data:`MAX_ARCH_FILE_BYTES`, UTF-8 text)."""
    from hwnas.files import check_input_file

    path = check_input_file(path, "architecture file", MAX_ARCH_FILE_BYTES)
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as err:
        raise HwnasError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise HwnasError(f"{path} is not UTF-8 text (byte {err.start}); expected a file holding one architecture "
                         "string") from None
    if not lines:
        raise StructureError(f"file {path} is empty; expected one architecture string")
    return lines[0]
