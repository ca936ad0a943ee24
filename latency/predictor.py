"""Latency prediction from a profile: the calibrated sum of the parts of an architecture.

1. **Decompose**: the space's decomposition (:mod:`hwnas.latency.kernels`)
   splits a network into parts.
2. **Part cost**: each part's batch time is read from the profile's table,
   interpolated between measured widths (:mod:`hwnas.latency.part_table`,
   :mod:`hwnas.latency.grids`).
3. **Sum**: the part times and the other :class:`~hwnas.latency.calibration.Features`
   of the network, summed over its parts (:mod:`hwnas.latency.block_rows`;
   networks of a block decomposition as sums of cached per-block rows).
4. **Calibrate**: the profile's calibration maps the features to the measured
   time of whole networks (:mod:`hwnas.latency.calibration`).

Latency is reported per image: batch time / batch.
"""

from __future__ import annotations

import gc
import math
from itertools import repeat

import numpy as np

from hwnas.errors import ProfileError
from hwnas.latency.block_rows import WIDTH, BlockRows, Terms
from hwnas.latency.calibration import (CALIBRATION_FORMS, FEATURES, FORM_FEATURES, PREDICTOR_VERSION, Features,
                                       form_terms)
from hwnas.latency.kernels import kernels_for
from hwnas.latency.part_table import PartTable, channel_block
from hwnas.latency.profile import Profile
from hwnas.models.spaces.base import get_space


class Predictor:
    """Per-image latency (ms) of architectures of a profile's space."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.space = get_space(profile.space)
        self.kernels = kernels_for(self.space)
        self.table = PartTable(profile.table, channel_block(profile.metadata))
        self.batch = profile.batch
        cal = profile.calibration or {}
        self.form = cal.get("form")
        self.coef = np.asarray(cal.get("coef", []), dtype=float)
        self._coef_list = [float(c) for c in self.coef]
        if self.form is not None and self.form not in CALIBRATION_FORMS:
            raise ProfileError(f"profile {profile.name}: unknown calibration form {self.form!r}")
        if self.form is not None and cal.get("predictor_version", PREDICTOR_VERSION) != PREDICTOR_VERSION:
            raise ProfileError(f"profile {profile.name}: calibrated for predictor version "
                               f"{cal.get('predictor_version')}, this hwnas has {PREDICTOR_VERSION}; "
                               "re-run profile-device")
        self.terms = Terms(self.table, channel_block(profile.metadata), self.batch, profile.precision)
        self._graph = None
        if self.form is not None and "graph" in FORM_FEATURES[self.form]:
            from hwnas.latency.graph import GraphFeatures

            if profile.graph is None:
                raise ProfileError(f"profile {profile.name}: calibrated with graph features but has no graph table")
            self._graph = GraphFeatures(self.space, profile.graph, cal.get("graph_ops"))
        self._arch_cache: dict = {}
        self._networks = profile.network_table()  # a profile of whole networks: looked up, not summed
        # A block decomposition's networks are sums of cached per-block rows (see BlockRows). Every form but
        # loglog (and graph, which block spaces never have) is linear in the features, so each row also caches
        # its share of the calibrated time (row_weights · row), and a prediction sums one value per row.
        # loglog and no calibration: the raw sum.
        row_weights, self._intercept = np.eye(WIDTH)[0], 0.0
        if self.form is not None and self.form != "loglog" and "graph" not in FORM_FEATURES[self.form]:
            row_weights = np.zeros(WIDTH)
            for name, c in zip(FORM_FEATURES[self.form], self._coef_list):
                row_weights[FEATURES.index(name)] = c
            self._intercept = self._coef_list[-1]
        self._block_arch = self.kernels.block_arch
        self.rows = None if self._block_arch is None else BlockRows(self.kernels, self.terms, row_weights)

    def _by_blocks(self, arch) -> bool:
        return self._block_arch is not None and isinstance(arch, self._block_arch)

    def features(self, arch) -> Features:
        """The network's features before calibration (sums over its parts)."""
        if isinstance(arch, str):
            arch = self.space.parse(arch)
        if self._networks is not None:  # one part: the whole network
            return Features(self.predict_batch_ms(arch), 0.0, 1, 0.0, 0.0, 0.0)
        if self._by_blocks(arch):
            rows = self.rows.of_one(arch)
            f = self.rows.rows[rows].sum(axis=0).tolist()
        else:
            f = self.terms.of_parts(zip(repeat(1.0), self.kernels.parts(arch)))
        return Features(f[0], f[1], int(round(f[2])), *f[3:])

    def _calibrated(self, total):
        """Calibrated batch ms from the sum of a network's row times (a float or an array)."""
        if self.form == "loglog":
            c = self._coef_list
            return np.exp(c[0] * np.log(total) + c[1]) if isinstance(total, np.ndarray) \
                else math.exp(c[0] * math.log(total) + c[1])
        return total + self._intercept

    def _calibrate_one(self, f: Features, arch) -> float:
        """The calibration applied to one network's features (plain floats); ``arch`` gives the graph
        features where the form uses them."""
        if self.form is None:
            return f[0]
        c = self._coef_list
        terms = form_terms(self.form, f, math.log)
        if self._graph is not None:
            terms = terms + list(self._graph(arch))
        out = c[-1] + sum(ci * x for ci, x in zip(c, terms))
        return math.exp(out) if self.form == "loglog" else out

    def predict_batch_ms(self, arch) -> float:
        """Calibrated time of one batch of the profile's batch size, in ms; infinite for a network that a
        profile of whole networks has no figure for (not deployable on that device)."""
        if self._networks is not None:
            return self._networks.get(self.space.format(arch), math.inf)
        if self._by_blocks(arch):
            rows = self.rows.of_one(arch)  # (may start the cache over: read the row times after it)
            return self._calibrated(sum(map(self.rows.times.__getitem__, rows)))
        hit = self._arch_cache.get(arch)  # other spaces: whole-architecture cache
        if hit is None:
            hit = self._calibrate_one(self.features(arch), arch)
            if len(self._arch_cache) > 200_000:
                self._arch_cache.clear()
            self._arch_cache[arch] = hit
        return hit

    def predict_ms(self, arch) -> float:
        """Calibrated per-image latency in ms (batch time / batch)."""
        return self.predict_batch_ms(arch) / self.batch

    def predict_many(self, archs) -> np.ndarray:
        """Per-image latency (ms) of many architectures; networks of a block decomposition are predicted as
        one batch (their new blocks computed together), which is much faster than one at a time."""
        archs = list(archs)
        if not archs:
            return np.zeros(0)
        if all(map(self._by_blocks, archs)):
            # A batch allocates thousands of small tuples (block keys, new rows) while the cache holds hundreds of
            # thousands: a cyclic-GC pass set off mid-batch traverses them all (a third of the call's time when it
            # hits), and nothing here makes a reference cycle, so the collector waits for the end of the call.
            collecting = gc.isenabled()
            gc.disable()
            try:
                blocks, heads, starts = self.rows.of_many(archs)
            finally:
                if collecting:
                    gc.enable()
            times = np.add.reduceat(self.rows.time[blocks], starts) + self.rows.time[heads]
            return self._calibrated(times) / self.batch
        return np.fromiter((self.predict_batch_ms(a) for a in archs), dtype=float, count=len(archs)) / self.batch
