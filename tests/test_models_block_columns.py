"""Blocks as dictionary keys (hash computed once, never carried across processes; the predictor's value key)
and the block rules on columns of blocks (BlockColumns): the same units and kernels as block by block."""

import copy
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest

from hwnas.latency.kernels import kernels_for
from hwnas.latency.kernels.zennas import BlockColumns, block_columns, block_fields, kernel_specs
from hwnas.models.spaces.base import get_space
from hwnas.models.structure import BASIC, BOTTLENECK, CONV, INVERTED, Block, parse
from hwnas.models.units import round8, unit_rules, unit_specs

TEXT = ("SuperConvK3BNRELU(3,32,2,1)SuperResK3K3(32,64,2,32,3)SuperResK1K5K1(64,128,2,40,2)"
        "SuperResIDWE6K7(128,256,2,72,4)SuperConvK1BNRELU(256,512,1,1)")


def _fields(b):
    return (b.kind, b.kernel, b.in_channels, b.out_channels, b.stride, b.sub_layers, b.mid, b.expansion)


def test_block_hash_is_the_hash_of_its_fields_and_survives_copies():
    s = parse(TEXT)
    for b in s.blocks:
        assert hash(b) == hash(_fields(b))
        copies = (copy.copy(b), copy.deepcopy(b), pickle.loads(pickle.dumps(b)), b.with_(), parse(str(b)).blocks[0])
        for other in copies:
            assert other == b and hash(other) == hash(b) and other is not b
        changed = b.with_(sub_layers=b.sub_layers + 1)
        assert hash(changed) == hash(_fields(changed)) and changed != b
    assert pickle.loads(pickle.dumps(s)) == s and hash(pickle.loads(pickle.dumps(s))) == hash(s)
    assert sorted(s.blocks) == sorted(s.blocks, key=_fields)  # order=True still compares fields


def test_block_key_is_injective_and_gives_the_columns_of_the_fields():
    rng = random.Random(3)
    blocks = [b for kind in (CONV, BASIC, BOTTLENECK, INVERTED) for b in _random_blocks(kind, 300, rng)]
    blocks += list(parse(TEXT).blocks) + [Block(CONV, 1, 8192, 8192, 2, 254), Block(INVERTED, 7, 1, 1, 1, 1, 1, 6)]
    by_key = {}
    for b in blocks:
        key = block_fields(b)
        assert by_key.setdefault(key, b) == b  # equal keys only for equal blocks
        assert block_fields(b.with_()) == key and block_fields(pickle.loads(pickle.dumps(b))) == key
    assert len(by_key) == len(set(blocks))
    cols = block_columns([block_fields(b) for b in blocks])
    for i, b in enumerate(blocks):
        assert cols["kind"][i] == b.kind
        for name in ("kernel", "in_channels", "out_channels", "stride", "sub_layers"):
            assert cols[name][i] == getattr(b, name)
        assert cols["mid"][i] == (b.mid or 0) and cols["expansion"][i] == (b.expansion or 0)


def test_pickled_structure_hashes_afresh_in_a_process_with_another_hash_seed():
    s = parse(TEXT)
    code = (
        "import pickle, sys\n"
        "from hwnas.models.structure import parse\n"
        f"s = pickle.loads(bytes.fromhex({pickle.dumps(s).hex()!r}))\n"
        f"p = parse({TEXT!r})\n"
        "assert s == p and hash(s) == hash(p), 'structure'\n"
        "assert all(hash(a) == hash(b) for a, b in zip(s.blocks, p.blocks)), 'blocks'\n"
        "assert {p: 1}[s] == 1 and {b: i for i, b in enumerate(p.blocks)}[s.blocks[2]] == 2, 'dict keys'\n"
        "print(hash(s.blocks[1]))\n"
    )
    seen = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seen.add(out.stdout.strip())
    assert len(seen) == 2  # the str hash differs between the seeds: the hash was computed there, not carried


def test_round8_on_ints_and_arrays_is_max_8_round_half_even():
    xs = np.arange(0, 20000)
    expected = [max(8, 8 * round(int(x) / 8)) for x in xs]
    assert [round8(int(x)) for x in xs] == expected
    assert all(type(round8(int(x))) is int for x in xs[:50])
    np.testing.assert_array_equal(round8(xs), expected)


def _random_blocks(kind, n, rng):
    out = []
    for _ in range(n):
        k = rng.choice((1, 3, 5, 7) if kind == CONV else (3, 5, 7))
        cin, cout, mid = (rng.choice((3, 8, 16, 24, 40, 64, 72, 128)) for _ in range(3))
        stride, layers = rng.choice((1, 2)), rng.choice((1, 2, 3, 5))
        if kind == CONV:
            out.append(Block(CONV, k, cin, cout, stride, layers))
        else:
            out.append(Block(kind, k, cin, cout, stride, layers, mid, rng.choice((1, 2, 4, 6)) if kind == INVERTED
                             else None))
    return out


def _columns(blocks, sub_layers):
    col = lambda name: np.array([getattr(b, name) or 0 for b in blocks], dtype=np.int64)  # noqa: E731
    kind = blocks[0].kind
    return BlockColumns(kind, blocks[0].kernel, col("in_channels"), col("out_channels"), col("stride"), sub_layers,
                        None if kind == CONV else col("mid"), col("expansion") if kind == INVERTED else None)


@pytest.mark.parametrize("kind", [CONV, BASIC, BOTTLENECK, INVERTED])
@pytest.mark.parametrize("no_residual", [False, True])
def test_unit_rules_on_columns_are_the_units_of_each_block(kind, no_residual):
    rng = random.Random(5)
    for _ in range(20):
        blocks = _random_blocks(kind, 12, rng)
        blocks = [b.with_(kernel=blocks[0].kernel, sub_layers=max(b.sub_layers, 2)) for b in blocks]
        cols = list(unit_rules(_columns(blocks, 2), sub_layers=2))
        for i, b in enumerate(blocks):
            one = list(unit_specs(b, no_residual=no_residual, sub_layers=2))
            assert len(one) == len(cols)
            for (sl, convs, residual, shortcut, se_after, stride), c in zip(one, cols):
                assert (sl, residual, se_after) == (c[0], c[2], c[4])
                picked = lambda v: v[i] if isinstance(v, np.ndarray) else v  # noqa: E731
                assert tuple(tuple(picked(x) for x in conv) for conv in c[1]) == convs
                projection = picked(c[3])
                named = None if no_residual or projection is None else "proj" if projection else "identity"
                assert named == shortcut and picked(c[5]) == stride


@pytest.mark.parametrize("kind", [CONV, BASIC, BOTTLENECK, INVERTED])
def test_kernel_specs_on_columns_are_the_block_kernels_of_each_block(kind):
    space = get_space("imagenet224")
    rng = random.Random(11)
    blocks = _random_blocks(kind, 40, rng)
    blocks = [b.with_(kernel=blocks[0].kernel, sub_layers=max(b.sub_layers, 2)) for b in blocks]
    sizes = np.array([rng.choice((7, 14, 28, 56, 112)) for _ in blocks], dtype=np.int64)
    cols = list(kernel_specs(_columns(blocks, 2), sizes, sub_layers=2))
    for i, b in enumerate(blocks):
        picked = lambda v: int(v[i]) if isinstance(v, np.ndarray) else v  # noqa: E731
        got = [(sl, op, picked(ci), picked(co), picked(sz), picked(st)) for sl, op, ci, co, sz, st, present in cols
               if picked(present)]
        assert got == kernels_for(space).block_kernels(b, int(sizes[i]), sub_layers=2)
