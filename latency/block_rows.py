"""A network's features as sums over its parts, and the cache of per-block rows of them.

:class:`Terms` computes the six :class:`~hwnas.latency.calibration.Features`
of weighted parts (one by one) or of kernels given as columns (many new blocks
at once). :class:`BlockRows` serves decompositions whose networks are sums of
per-block rows (``block_arch``): the row of every (block, input size) seen and
of every head is computed once and kept, as an array (batches) and as flat
floats (one network at a time). Mutants share most blocks with their parents,
so a search mostly hits the cache.

Blocks are found by identity first (a mutant holds its parent's block
objects): ``id(block)`` maps to a *code*, ``row << 21 | (stride 2) << 20 |
input size``; each hit is checked to have been cached at the input size the
block sits at. Other blocks (new objects, or one at another size) are found
by value (the decomposition's ``block_key``: a tuple of the block's fields),
and new ones computed. Every block in the identity index is kept alive, so an
id never names another object while it is cached.
"""

from __future__ import annotations

from itertools import chain, compress, repeat
from operator import attrgetter, itemgetter, not_

import numpy as np

from hwnas.errors import ProfileError
from hwnas.latency.kernels.base import Part
from hwnas.latency.part_table import PartTable, misaligned, op_shape

WIDTH = 6  # columns of a row: the Features fields
# Block codes: row << 21 | (stride 2) << 20 | input size; head codes: row << 20 | size.
_SIZE_BITS = 20
_SIZE_MASK = (1 << _SIZE_BITS) - 1
_ROW_SHIFT = _SIZE_BITS + 1
_BLOCKS, _LAST = attrgetter("blocks"), itemgetter(-1)
_STRIDE, _OUT = attrgetter("stride"), attrgetter("out_channels")
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)


class Terms:
    """The six features of parts of a profile: batch ms, boundary MB, count, misaligned ms, weight MB,
    squared boundary MB (activations at 4 bytes per element, 2 in fp16; ``block`` the SIMD block)."""

    def __init__(self, table: PartTable, block: int, batch: int, precision: str):
        self.table, self.block = table, block
        self.mb_per_elem = 4 * batch / 1e6  # fp32 activations handed over per input element
        self.mb_per_param = 4 / 1e6
        if precision == "fp16":
            self.mb_per_elem /= 2
            self.mb_per_param /= 2
        self._kernel_terms: dict[tuple, tuple] = {}

    def of_parts(self, weighted) -> tuple[float, ...]:
        """The features of ``(weight, part)`` pairs (a part counted ``weight`` times)."""
        total = mb = n = mis = params = mb2 = 0.0
        ms_of, block, per_elem = self.table.ms, self.block, self.mb_per_elem
        for w, part in weighted:
            ms = ms_of(part)
            cin, cout, size = part.cin, part.cout, part.resolution
            dense, square, depthwise = op_shape(part.op)
            handed = cin * size * size * per_elem
            total += w * ms
            mb += w * handed
            mb2 += w * handed * handed
            params += w * square * (cout if depthwise else cin * cout)  # a part's weights
            n += w
            if misaligned(dense, cin, cout, block):
                mis += w * ms
        return total, mb, n, mis, params * self.mb_per_param, mb2

    def of_kernels(self, weighted) -> tuple[float, ...]:
        """:meth:`of_parts` of ``(weight, op, cin, cout, resolution, stride)`` (parts with the default
        ``mid``, ``first``, ``se`` and ``extra``); each kernel's terms are computed once and kept."""
        total = mb = n = mis = params = mb2 = 0.0
        memo = self._kernel_terms
        for w, op, cin, cout, size, stride in weighted:
            key = (op, cin, cout, size, stride)
            terms = memo.get(key)
            if terms is None:
                if len(memo) > 1_000_000:  # a long search: keep memory bounded
                    memo.clear()
                part = Part(op, cin, cout, size, stride)
                ms = self.table.ms(part)
                dense, square, depthwise = op_shape(op)
                terms = memo[key] = (ms, cin * size * size * self.mb_per_elem,
                                     square * (cout if depthwise else cin * cout),  # the part's weights
                                     ms if misaligned(dense, cin, cout, self.block) else 0.0)
            ms, handed, weights, mis_ms = terms
            total += w * ms
            mb += w * handed
            mb2 += w * handed * handed
            params += w * weights  # integers: exact in any order, as in of_parts
            n += w
            mis += w * mis_ms
        return total, mb, n, mis, params * self.mb_per_param, mb2

    def of_columns(self, owner, weight, ops, code, cin, cout, size, stride, n: int) -> np.ndarray:
        """:meth:`of_parts` of many kernels as columns (op ``ops[code[k]]``), summed into ``n`` rows by
        ``owner``."""
        ms = self.table.coded_ms(ops, code, cin, cout, size, stride)
        dense, square, depthwise = (np.array(c)[code] for c in zip(*map(op_shape, ops)))
        mis = misaligned(dense, cin, cout, self.block)
        params = square * np.where(depthwise, cout, cin * cout)  # the parts' weights
        handed = (cin * size * size) * self.mb_per_elem
        out = np.empty((n, WIDTH))
        out[:, 0] = np.bincount(owner, weight * ms, minlength=n)
        out[:, 1] = np.bincount(owner, weight * handed, minlength=n)
        out[:, 2] = np.bincount(owner, weight, minlength=n)
        out[:, 3] = np.bincount(owner, weight * np.where(mis, ms, 0.0), minlength=n)
        out[:, 4] = np.bincount(owner, weight * params, minlength=n) * self.mb_per_param
        out[:, 5] = np.bincount(owner, weight * handed * handed, minlength=n)
        return out


class BlockRows:
    """Cached feature rows of the blocks and heads of a block decomposition's networks; each row also holds
    its share of the calibrated time (``row_weights`` · row: the calibration is linear in the features)."""

    def __init__(self, kernels, terms: Terms, row_weights: np.ndarray):
        self.kernels, self.terms, self.row_weights = kernels, terms, row_weights
        self.resolution = kernels.space.resolution
        if self.resolution >= _SIZE_MASK:
            raise ProfileError(f"input size {self.resolution} is too large for the predictor's block cache")
        self.limit = 500_000  # rows (and block objects) kept before the cache starts over (a long search)
        self.columns_from = 8  # new blocks of one call expanded in columns from this many on
        self.clear()

    def clear(self) -> None:
        # By value: input size -> {block fields: row}, and (width, size) -> row of a head.
        self._row_at: dict[int, dict] = {}
        self._head_row: dict[tuple[int, int], int] = {}
        self.rows = np.empty((1024, WIDTH))
        self.time = np.empty(1024)  # each row's share of the calibrated time
        self.times: list[float] = []  # the same as plain floats (one at a time: no numpy scalars)
        # By identity: id(block) -> code, id(last block) -> head code; the objects kept alive in _id_blocks.
        self._id_code: dict[int, int] = {}
        self._id_head: dict[int, int] = {}
        self._id_blocks: list = []

    def __len__(self) -> int:
        return len(self.times)

    def _start_over_if_full(self) -> None:
        if max(len(self.times), len(self._id_code), len(self._id_blocks)) > self.limit:
            self.clear()  # only between calls: the rows of a call stay valid

    def of_one(self, arch) -> list[int]:
        """The rows of one network's blocks, then its head (the one-at-a-time path of :meth:`of_many`)."""
        self._start_over_if_full()
        id_code, new, first_new = self._id_code, [], len(self.times)
        id_get, row_at, block_key = id_code.get, self._row_at, self.kernels.block_key
        rows: list[int] = []
        h = self.resolution
        for b in arch.blocks:
            code = id_get(id(b), -1)
            if code & _SIZE_MASK != h:  # by value (as _codes_by_value, inline: the one-at-a-time hot path)
                index = row_at.get(h)
                if index is None:
                    index = row_at[h] = {}
                key = block_key(b)
                r = index.get(key)
                if r is None:
                    r = index[key] = first_new + len(new)
                    new.append((b, h, key))
                code = id_code[id(b)] = r << _ROW_SHIFT | (b.stride == 2) << _SIZE_BITS | h
                self._id_blocks.append(b)
            rows.append(code >> _ROW_SHIFT)
            h = (h - 1) // b.stride + 1
        key = (b.out_channels, h)
        r = self._head_row.get(key)
        if r is None:
            r = self._head_row[key] = first_new + len(new)
            new.append(("head", *key))
        rows.append(r)
        if new:
            self._add(new)
        return rows

    def _codes_by_value(self, blocks: list, h: int, first_new: int, new: list) -> np.ndarray:
        """Codes of ``blocks`` at input size ``h``, found by value; rows not cached are numbered after
        ``first_new`` and the rows queued in ``new``, and queued, each once. The objects are kept alive."""
        index = self._row_at.get(h)
        if index is None:
            index = self._row_at[h] = {}
        keys = list(map(self.kernels.block_key, blocks))
        rows = list(map(index.get, keys))
        if None in rows:
            fresh = dict(zip(keys, blocks))  # the keys not cached, each once (equal blocks, equal rows)
            for k in fresh.keys() & index.keys():
                del fresh[k]
            index.update(zip(fresh, range(first_new + len(new), first_new + len(new) + len(fresh))))
            new += zip(fresh.values(), repeat(h), fresh)
            rows = list(map(index.__getitem__, keys))
        self._id_blocks += blocks
        halves = np.fromiter(map(_STRIDE, blocks), dtype=np.int64, count=len(blocks)) == 2
        return np.array(rows, dtype=np.int64) << _ROW_SHIFT | halves.astype(np.int64) << _SIZE_BITS | h

    def of_many(self, archs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows of many networks' blocks (concatenated) and heads, and where each network's blocks start:
        the rows :meth:`of_one` gives, in C-level passes (``map``) and numpy, no Python loop per block."""
        self._start_over_if_full()
        n = len(archs)
        id_code, id_head = self._id_code, self._id_head
        blocks_of = list(map(_BLOCKS, archs))
        lens = np.fromiter(map(len, blocks_of), dtype=np.int64, count=n)
        flat = list(chain.from_iterable(blocks_of))
        ids = list(map(id, flat))
        ends = np.cumsum(lens)
        starts = ends - lens
        codes = np.fromiter(map(id_code.get, ids, repeat(-1)), dtype=np.int64, count=len(flat))
        # input size of every position: the resolution halved (rounding up) once per stride-2 block before it
        # (nested ceilings: ⌈⌈h/2⌉/2⌉ = ⌈h/4⌉)
        unknown = np.flatnonzero(codes < 0)
        halves = (codes >> _SIZE_BITS) & 1
        if unknown.size:
            strides = np.fromiter(map(_STRIDE, map(flat.__getitem__, unknown.tolist())), dtype=np.int64,
                                  count=unknown.size)
            if ((strides != 1) & (strides != 2)).any():
                raise ProfileError("block strides must be 1 or 2")
            halves[unknown] = strides == 2
        halved = np.cumsum(halves)
        halved = np.minimum(halved - halves - np.repeat(halved[starts] - halves[starts], lens), 40)
        size = (self.resolution + (np.int64(1) << halved) - 1) >> halved
        new: list = []
        first_new = len(self.times)
        bad = (codes < 0) | ((codes & _SIZE_MASK) != size)
        if bad.any():  # new block objects, or one cached at another input size: by value, each object once
            at = np.flatnonzero(bad)
            _, first, inverse = np.unique(np.array(ids, dtype=np.int64)[at], return_index=True, return_inverse=True)
            once = at[first]
            found = self._sized_codes(once, flat, size, first_new, new)
            codes[at] = found[inverse.reshape(-1)]
            id_code.update(zip(map(ids.__getitem__, once.tolist()), found.tolist()))
            odd = (codes[at] & _SIZE_MASK) != size[at]  # one object at several input sizes in this call (rare)
            if odd.any():
                codes[at[odd]] = self._sized_codes(at[odd], flat, size, first_new, new)
        lasts = list(map(_LAST, blocks_of))
        final = (size[ends - 1] - 1) // (1 + halves[ends - 1]) + 1
        heads = np.fromiter(map(id_head.get, map(id, lasts), repeat(-1)), dtype=np.int64, count=n)
        bad = (heads < 0) | ((heads & _SIZE_MASK) != final)
        if bad.any():
            at = np.flatnonzero(bad)
            where = at.tolist()
            keys = list(zip(map(_OUT, map(lasts.__getitem__, where)), final[at].tolist()))
            rows = []
            for key in keys:
                r = self._head_row.get(key)
                if r is None:
                    r = self._head_row[key] = first_new + len(new)
                    new.append(("head", *key))
                rows.append(r)
            fixed = np.array(rows, dtype=np.int64) << _SIZE_BITS | final[at]
            heads[at] = fixed
            id_head.update(zip(map(id, map(lasts.__getitem__, where)), fixed.tolist()))  # every last block is kept
        if new:
            self._add(new)
        return codes >> _ROW_SHIFT, heads >> _SIZE_BITS, starts

    def _sized_codes(self, positions: np.ndarray, flat: list, size: np.ndarray, first_new: int,
                     new: list) -> np.ndarray:
        """:meth:`_codes_by_value` of the blocks at ``positions`` of ``flat``, whose input sizes are ``size``."""
        out = np.empty(len(positions), dtype=np.int64)
        sizes = size[positions]
        for h in np.unique(sizes).tolist():  # a few input sizes: one C-level pass of look-ups each
            mask = sizes == h
            blocks = list(map(flat.__getitem__, positions[mask].tolist()))
            out[mask] = self._codes_by_value(blocks, h, first_new, new)
        return out

    def _add(self, keys: list) -> None:
        """Compute and store the rows of new cache entries, in order: ``(block, input size, its block_key)`` or
        ``("head", width, size)``. Many new blocks are expanded in columns, a few one by one."""
        kernels, terms = self.kernels, self.terms
        if len(keys) < self.columns_from:  # a few (a search's one new block): one by one, no numpy per entry
            new = np.array([terms.of_parts([(1.0, kernels.head_part(k[1], k[2]))]) if k[0].__class__ is str
                            else terms.of_kernels(kernels.weighted_kernels(k[0], k[1])) for k in keys])
            self._store(new)
            return
        new = np.zeros((len(keys), WIDTH))
        is_head = list(map(isinstance, map(_FIRST, keys), repeat(str)))  # ("head", width, size)
        heads = list(compress(range(len(keys)), is_head))
        blocks = list(compress(range(len(keys)), map(not_, is_head))) if heads else list(range(len(keys)))
        if len(blocks) >= self.columns_from:
            entries = list(map(keys.__getitem__, blocks))
            sizes = np.fromiter(map(_SECOND, entries), dtype=np.int64, count=len(entries))
            columns = kernels.kernel_columns(list(map(_THIRD, entries)), sizes)
            new[blocks] = terms.of_columns(*columns, n=len(blocks))
        else:
            for j in blocks:
                b, h, _ = keys[j]
                new[j] = terms.of_kernels(kernels.weighted_kernels(b, h))
        for j in heads:
            new[j] = terms.of_parts([(1.0, kernels.head_part(keys[j][1], keys[j][2]))])
        self._store(new)

    def _store(self, new: np.ndarray) -> None:
        """Append rows (and their calibrated time shares) to the cache."""
        used, count = len(self.times), len(new)
        if used + count > len(self.rows):
            size = max(2 * len(self.rows), used + count)
            grown, grown_time = np.empty((size, WIDTH)), np.empty(size)
            grown[:used], grown_time[:used] = self.rows[:used], self.time[:used]
            self.rows, self.time = grown, grown_time
        time = new @ self.row_weights
        self.rows[used:used + count] = new
        self.time[used:used + count] = time
        self.times += time.tolist()
