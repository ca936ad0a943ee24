"""Latency prediction from a profile: calibrated sum of the parts of an architecture.

Three steps, each with one place in this file:

1. **Part cost** (:class:`PartTable`). Parts are grouped by everything but their
   widths (op, first, stride, SE, extra, input resolution). Within a group a
   small cost model ``t = a + b·MACs + c·activation_elements`` (non-negative
   coefficients, fitted for relative error) carries the shape of the cost
   between widths, and the ratio ``measured / model`` on the grid points is
   interpolated linearly in log-width space (nearest grid point outside their
   hull). The result equals the table on every grid point and follows the
   MAC/byte scaling between them (widths rarely sit on the grid: mutations
   scale them by 1.25-2.5 and round to 8). Convolutions whose channel counts
   are not multiples of the CPU's SIMD block run on a slower path, so the
   grid holds such widths too and the ratio is interpolated separately over
   aligned and misaligned grid points (the cost model is fitted on the aligned
   ones); a part is blended by its fraction of MACs in misaligned convs.
2. **Raw sum** of the part costs, plus three network features the calibration may
   use: ``boundary_mb``, the activation megabytes handed into the parts (each
   separately timed part pays for receiving and returning its activations, a
   whole network does not), the number of parts, and ``misaligned_ms``, the
   part time spent in convolutions whose channel counts are not multiples of
   the CPU's SIMD block (16 floats with AVX-512, else 8): on the AVX-512
   machine profiled here ONNX Runtime runs misaligned convs markedly slower
   (a calibration term for what the part table still misses).
3. **Calibration** (:func:`fit_calibration`): a model fitted on whole networks
   measured end to end while profiling, in the form the data supports (chosen
   by leave-one-out error among affine, affine + boundary bytes, affine +
   boundary bytes + part count, log-log, affine + misaligned time, and affine
   + misaligned time + boundary bytes), stored in the profile.

Latency is reported per image: batch time / batch.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import nnls

from hwnas.errors import ProfileError
from hwnas.latency.profile import Profile
from hwnas.models.spaces.base import Part, get_space
from hwnas.models.structure import Structure

PREDICTOR_VERSION = 1
CALIBRATION_FORMS = ("affine", "boundary", "boundary_count", "loglog", "misaligned", "misaligned_boundary")


# --- 1. part cost -------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _op_kind(op: str):
    """(kind, kernel, expansion) of a Zen-NAS block name, or None for any other op."""
    from hwnas.errors import StructureError
    from hwnas.models.structure import parse

    try:
        b = parse(f"{op}(8,8,1,1)" if op.startswith("SuperConv") else f"{op}(8,8,1,8,1)").blocks[0]
    except StructureError:
        return None
    return b.kind, b.kernel, b.expansion


@lru_cache(maxsize=1 << 16)
def _part_units(part: Part, use_se: bool = False):
    """The units of a Zen-NAS block part (its sub-layer of a one-block structure), or None for other ops."""
    from hwnas.models.structure import Block
    from hwnas.models.units import block_units

    kind = _op_kind(part.op)
    if kind is None:
        return None
    k, kernel, expansion = kind
    block = Block(k, kernel, part.cin, part.cout, part.stride, 1 if part.first else 2,
                  None if k == "conv" else (part.mid or part.cout), expansion)
    units = tuple(block_units(block, use_se=use_se and block.is_residual))
    return units if part.first else units[{"conv": 1, "basic": 1, "bottleneck": 2, "inverted": 2}[k]:]


def _block_features(part: Part):
    """(MACs, input elements, output elements) of a Zen-NAS block part, or None if ``op`` is no block name."""
    from hwnas.models.units import out_size

    units = _part_units(part, part.se)
    if units is None:
        return None
    h, macs, act = part.resolution, 0, 0
    for u in units:
        size = h
        for c in u.convs:
            size = out_size(size, c.stride)
            macs += c.weights * size * size
            act += c.cout * size * size
        if u.shortcut == "proj":
            macs += u.cin * u.cout * size * size
        h = size
    return float(macs), float(part.cin * part.resolution ** 2), float(act)


def part_features(part: Part) -> tuple[float, float, float]:
    """(MACs, input elements, activation elements written) of one part at batch 1.

    Exact for Zen-NAS blocks; for other ops (heads, NB201 cells' ops) a
    width-scaling proxy, which only shapes interpolation between grid widths.
    """
    if part.op != "head":
        feats = _block_features(part)
        if feats is not None:
            return feats
    r_in = part.resolution
    r_out = max(1, (r_in - 1) // max(1, part.stride) + 1)
    inp = float(part.cin * r_in * r_in)
    if part.op == "head":
        return inp + part.cin * part.cout, inp, float(part.cout)
    macs = float(max(part.cin, 1) * max(part.cout, 1) * r_out * r_out + max(part.mid, 0) * r_out * r_out)
    return macs, inp, float(max(part.cout, 1) * r_out * r_out)


def misaligned_fraction(part: Part, block: int) -> float:
    """Fraction of a Zen-NAS block part's conv MACs in convs with channels not a multiple of ``block``."""
    from hwnas.models.units import out_size

    units = _part_units(part, False)
    if units is None:
        return 0.0
    h, total, mis = part.resolution, 0, 0
    for u in units:
        size = h
        for c in u.convs:
            size = out_size(size, c.stride)
            macs = c.weights * size * size
            total += macs
            if c.groups == 1 and c.cin > 3 and (c.cin % block or c.cout % block):
                mis += macs
        h = size
    return mis / total if total else 0.0


def channel_block(metadata: dict) -> int:
    """SIMD block of the profiled device in floats: 16 with AVX-512, 8 otherwise (and on GPUs)."""
    simd = metadata.get("device", {}).get("simd", [])
    return 16 if "avx512f" in simd else 8


def _group_key(part: Part):
    return (part.op, bool(part.first), int(part.stride), bool(part.se), str(part.extra), int(part.resolution))


def _log_widths(parts: Sequence[Part]) -> np.ndarray:
    return np.log2(np.array([[max(p.cin, 1), max(p.cout, 1), max(p.mid, 1)] for p in parts], dtype=float))


class _Interp:
    """Linear interpolation of a value over grid points in log-width space (nearest point outside the hull)."""

    def __init__(self, x: np.ndarray, value: np.ndarray):
        # Keep one column of every set of columns that move together (cin = cout, cin = cout/2 ...).
        keep = []
        for j in range(x.shape[1]):
            if np.ptp(x[:, j]) < 1e-9:
                continue
            if any(np.ptp(x[:, j] - x[:, k]) < 1e-9 for k in keep):
                continue
            keep.append(j)
        self.keep = keep
        self.x, self.value = x[:, keep], value
        self._simplices = None
        if len(keep) >= 2 and len(value) > len(keep):
            from scipy.spatial import Delaunay, QhullError

            try:
                tri = Delaunay(self.x)
                # Barycentric maps of every simplex, computed once (batched), searched by brute force:
                # groups hold tens of points, and this beats scipy's per-call find_simplex.
                simplices = tri.simplices
                corners = self.x[simplices]  # (n, d+1, d)
                origin = corners[:, -1, :]
                edges = np.transpose(corners[:, :-1, :] - origin[:, None, :], (0, 2, 1))
                ok = np.abs(np.linalg.det(edges)) > 1e-12
                self._simplices, self._origin = simplices[ok], origin[ok]
                self._inverse = np.linalg.inv(edges[ok])
            except (QhullError, ValueError):
                self._simplices = None
        elif len(keep) == 1:
            order = np.argsort(self.x[:, 0])
            self.x1, self.v1 = self.x[order, 0], value[order]

    def __call__(self, logw: np.ndarray) -> float:
        if not self.keep:
            return float(np.median(self.value))
        q = logw[self.keep]
        if len(self.keep) == 1:
            return float(np.interp(q[0], self.x1, self.v1))
        if self._simplices is not None and len(self._simplices):  # linear (barycentric) inside the hull
            bary = np.einsum("nij,nj->ni", self._inverse, q - self._origin)
            inside = (bary >= -1e-9).all(axis=1) & (bary.sum(axis=1) <= 1 + 1e-9)
            hits = np.flatnonzero(inside)
            if hits.size:
                i = hits[0]
                return float(self.value[self._simplices[i]] @ np.append(bary[i], 1.0 - bary[i].sum()))
        return float(self.value[np.argmin(((self.x - q) ** 2).sum(axis=1))])  # nearest grid point outside


class _Group:
    """Cost model and ratio interpolators of one table group.

    ``fractions`` are the grid points' misaligned MAC fractions (see
    :func:`misaligned_fraction`). The cost model is fitted on the aligned points
    (fraction 0); the ratio measured/model is interpolated separately over the
    aligned points and over the misaligned ones, so a misaligned width takes
    its ratio only from misaligned grid points (the CPU runs those convs on
    another code path), and a part with a fraction ``f`` of its MACs in
    misaligned convs gets ``(1 - f)·aligned ratio + f·misaligned ratio``.
    A misaligned point's ratio is first freed of its aligned share the same way.
    """

    def __init__(self, parts: list[Part], ms: np.ndarray, fractions: np.ndarray | None = None):
        fr = np.zeros(len(parts)) if fractions is None else np.asarray(fractions, dtype=float)
        aligned = fr == 0
        if aligned.sum() < 2:  # too few aligned points: one model and one interpolator for all
            aligned = np.ones(len(parts), dtype=bool)
            fr = np.zeros(len(parts))
        feats = np.array([part_features(p) for p in parts])
        design = np.column_stack([np.ones(len(parts)), feats[:, 0] / 1e6, (feats[:, 1] + feats[:, 2]) / 1e6])
        if aligned.sum() < 3:
            design = design[:, :2]  # too few points for three coefficients
        w = 1.0 / ms[aligned]
        coef, _ = nnls(design[aligned] * w[:, None], ms[aligned] * w)
        if not np.any(coef > 0):
            coef = np.zeros(design.shape[1])
            coef[0] = float(np.median(ms[aligned]))
        self.coef = coef
        ratio = ms / np.maximum(design @ coef, 1e-12)
        x = _log_widths(parts)
        self.aligned = _Interp(x[aligned], ratio[aligned])
        self.misaligned = None
        mis = fr >= 0.25
        if mis.any():
            base = np.array([self.aligned(xi) for xi in x[mis]])
            f = fr[mis]
            self.misaligned = _Interp(x[mis], (ratio[mis] - (1 - f) * base) / f)

    def model_ms(self, part: Part) -> float:
        f = part_features(part)
        row = np.array([1.0, f[0] / 1e6, (f[1] + f[2]) / 1e6])[: len(self.coef)]
        return float(row @ self.coef)

    def ratio_at(self, part: Part, fraction: float = 0.0) -> float:
        q = _log_widths([part])[0]
        r = self.aligned(q)
        if fraction > 0 and self.misaligned is not None:
            r = (1 - fraction) * r + fraction * self.misaligned(q)
        return r

    def ms(self, part: Part, fraction: float = 0.0) -> float:
        return self.model_ms(part) * self.ratio_at(part, fraction)


class PartTable:
    """Batch-time cost of any part of a profile's space, from the profile's table.

    ``block`` is the device's SIMD block in floats (:func:`channel_block`); with
    it, and when the grid holds misaligned output widths, misaligned parts are
    interpolated from misaligned grid points (see :class:`_Group`); otherwise
    (no block, or a grid of aligned widths only) every part is treated as aligned.
    """

    def __init__(self, table, block: int | None = None):
        if block is not None and not ((table["op"] != "head") & (table["cout"] % block != 0)).any():
            block = None  # a grid without misaligned widths: nothing to interpolate them from
        self.block = block
        self._exact: dict[Part, float] = {}
        groups: dict[tuple, list] = {}
        for row in table.itertuples(index=False):
            part = Part(op=row.op, cin=int(row.cin), cout=int(row.cout), resolution=int(row.resolution),
                        stride=int(row.stride), mid=int(row.mid), first=bool(row.first), se=bool(row.se),
                        extra=str(row.extra))
            ms = float(row.median_ms)
            if not (ms > 0 and math.isfinite(ms)):
                raise ProfileError(f"profile table has a non-positive or non-finite latency for {part}")
            self._exact[part] = ms
            groups.setdefault(_group_key(part), []).append((part, ms))
        self._raw_groups = groups
        self._groups: dict[tuple, _Group] = {}
        self._cache: dict[Part, float] = dict(self._exact)
        self._fraction: dict[Part, float] = {}

    def group_keys(self):
        return list(self._raw_groups)

    def fraction(self, part: Part) -> float:
        """Misaligned MAC fraction of a part for interpolation (0 when the table is not split)."""
        if self.block is None:
            return 0.0
        f = self._fraction.get(part)
        if f is None:
            f = self._fraction[part] = misaligned_fraction(part, self.block)
        return f

    def ms(self, part: Part) -> float:
        """Batch time (ms) of one part measured in isolation, interpolated between grid widths."""
        hit = self._cache.get(part)
        if hit is not None:
            return hit
        key = _group_key(part)
        group = self._groups.get(key)
        if group is None:
            rows = self._raw_groups.get(key)
            if rows is None:
                raise ProfileError(
                    f"the profile has no measurements for op {part.op} (first={part.first}, stride={part.stride}, "
                    f"se={part.se}) at input resolution {part.resolution}; the profile's grid does not cover this "
                    "part of the architecture")
            parts = [p for p, _ in rows]
            group = self._groups[key] = _Group(parts, np.array([m for _, m in rows]),
                                               np.array([self.fraction(p) for p in parts]))
        value = max(group.ms(part, self.fraction(part)), 1e-6)
        self._cache[part] = value
        return value


# --- 3. calibration ------------------------------------------------------------------------------

# The features each calibration form is linear in (plus an intercept); "log_s" is log(raw sum).
FORM_FEATURES = {
    "affine": ("s",),
    "boundary": ("s", "b"),
    "boundary_count": ("s", "b", "n"),
    "loglog": ("log_s",),
    "misaligned": ("s", "m"),
    "misaligned_boundary": ("s", "m", "b"),
}


def _features(form: str, s, b, n, m, log):
    if form not in FORM_FEATURES:
        raise ProfileError(f"unknown calibration form {form!r}; expected one of {', '.join(CALIBRATION_FORMS)}")
    values = {"s": s, "b": b, "n": n, "m": m}
    return [log(s) if name == "log_s" else values[name] for name in FORM_FEATURES[form]]


def _design(form: str, s, b, n, m=None) -> np.ndarray:
    s, b, n = (np.asarray(v, dtype=float) for v in (s, b, n))
    m = np.zeros_like(s) if m is None else np.asarray(m, dtype=float)
    return np.column_stack(_features(form, s, b, n, m, np.log) + [np.ones_like(s)])


def _fit(form: str, s, b, n, y, m=None) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    X = _design(form, s, b, n, m)
    if form == "loglog":
        coef, *_ = np.linalg.lstsq(X, np.log(y), rcond=None)
    else:  # least squares on relative error
        coef, *_ = np.linalg.lstsq(X / y[:, None], np.ones_like(y), rcond=None)
    return coef


def apply_calibration(form: str, coef, s, b, n, m=None) -> np.ndarray:
    X = _design(form, np.atleast_1d(s), np.atleast_1d(b), np.atleast_1d(n), None if m is None else np.atleast_1d(m))
    out = X @ np.asarray(coef, dtype=float)
    return np.exp(out) if form == "loglog" else out


def fit_calibration(s, b, n, y, m=None, forms: Iterable[str] = CALIBRATION_FORMS) -> dict:
    """Fit every form on (raw sum, boundary MB, part count, misaligned ms) → measured batch ms; keep the best
    by leave-one-out.

    Returns a dict with ``form``, ``coef`` and, per form, the leave-one-out
    MAPE and fraction within ±10% (what the choice was based on). The simplest
    form within 0.1 percentage point of the best leave-one-out MAPE wins.
    """
    s, b, n, y = (np.asarray(v, dtype=float) for v in (s, b, n, y))
    m = np.zeros_like(s) if m is None else np.asarray(m, dtype=float)
    if not np.any(m):  # nothing misaligned: those forms would be singular
        forms = [f for f in forms if not f.startswith("misaligned")]
    if len(y) < 3:
        raise ProfileError(f"calibration needs at least 3 measured networks, got {len(y)}")
    report = {}
    for form in forms:
        k = _design(form, s[:1], b[:1], n[:1], m[:1]).shape[1]
        if len(y) < k + 2:
            continue
        pred = np.empty_like(y)
        for i in range(len(y)):
            k_ = np.arange(len(y)) != i
            pred[i] = apply_calibration(form, _fit(form, s[k_], b[k_], n[k_], y[k_], m[k_]),
                                        s[i], b[i], n[i], m[i])[0]
        err = np.abs(pred / y - 1)
        report[form] = {"loo_mape": float(err.mean() * 100), "loo_within_10pct": float((err <= 0.10).mean()),
                        "loo_within_5pct": float((err <= 0.05).mean()), "params": k}
    raw_err = np.abs(s / y - 1)
    best = min(r["loo_mape"] for r in report.values())
    form = min((f for f in report if report[f]["loo_mape"] <= best + 0.1), key=lambda f: report[f]["params"])
    coef = _fit(form, s, b, n, y, m)
    return {"form": form, "coef": [float(c) for c in coef], "forms": report,
            "raw_sum_mape": float(raw_err.mean() * 100), "raw_sum_within_10pct": float((raw_err <= 0.1).mean()),
            "predictor_version": PREDICTOR_VERSION}


# --- the predictor -------------------------------------------------------------------------------

class Predictor:
    """Per-image latency (ms) of architectures of a profile's space."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.space = get_space(profile.space)
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
                               f"{cal.get('predictor_version')}, this hwnas has {PREDICTOR_VERSION}; re-run profile-device")
        self._boundary_mb_per_elem = 4 * self.batch / 1e6  # fp32 activations handed over per input element
        if profile.precision == "fp16":
            self._boundary_mb_per_elem /= 2
        self._arch_cache: dict = {}
        self._block_cache: dict = {}
        # Structure spaces get a per-block fast path (see _structure_features).
        self._structure_space = type(self.space).__name__ == "ZenNASSpace"
        self._block = channel_block(profile.metadata)
        self._misaligned: dict[Part, float] = {}

    def _parts(self, arch):
        if isinstance(arch, str):
            arch = self.space.parse(arch)
        return self.space.parts(arch)

    def _misaligned_fraction(self, part: Part) -> float:
        if self.table.block is not None:
            return self.table.fraction(part)
        f = self._misaligned.get(part)
        if f is None:
            f = self._misaligned[part] = misaligned_fraction(part, self._block)
        return f

    def _part_terms(self, parts) -> tuple[float, float, int, float]:
        total, mb, n, mis = 0.0, 0.0, 0, 0.0
        for part in parts:
            ms = self.table.ms(part)
            total += ms
            mis += ms * self._misaligned_fraction(part)
            mb += part.cin * part.resolution * part.resolution
            n += 1
        return total, mb * self._boundary_mb_per_elem, n, mis

    def features(self, arch) -> tuple[float, float, int, float]:
        """(raw sum of part batch times in ms, boundary MB, number of parts, misaligned ms) before calibration."""
        if isinstance(arch, str):
            arch = self.space.parse(arch)
        if self._structure_space and isinstance(arch, Structure):
            return self._structure_features(arch)
        return self._part_terms(self.space.parts(arch))

    def _structure_features(self, arch) -> tuple[float, float, int, float]:
        """features() of a Zen-NAS structure from per-block terms cached by (block, input size).

        The same parts as ``ZenNASSpace.parts`` (one per sub-layer, then the head);
        a test checks both paths agree. Mutants share most blocks with their
        parents, so a search mostly hits this cache.
        """
        cache = self._block_cache
        h = self.space.resolution
        total = mb = mis = 0.0
        n = 0
        for b in arch.blocks:
            terms = cache.get((b, h))
            h_out = (h - 1) // b.stride + 1
            if terms is None:
                parts = [Part(op=b.name, cin=b.in_channels if i == 0 else b.out_channels, cout=b.out_channels,
                              resolution=h if i == 0 else h_out, stride=b.stride if i == 0 else 1,
                              mid=b.mid or 0, first=i == 0) for i in range(b.sub_layers)]
                terms = cache[(b, h)] = self._part_terms(parts)
            total += terms[0]
            mb += terms[1]
            n += terms[2]
            mis += terms[3]
            h = h_out
        head = cache.get(("head", arch.blocks[-1].out_channels, h))
        if head is None:
            head = cache[("head", arch.blocks[-1].out_channels, h)] = self._part_terms(
                [Part(op="head", cin=arch.blocks[-1].out_channels, cout=self.space.num_classes, resolution=h)])
        return total + head[0], mb + head[1], n + head[2], mis + head[3]

    def calibrate(self, s, b, n, m=None):
        if self.form is None:
            return np.atleast_1d(np.asarray(s, dtype=float))
        return apply_calibration(self.form, self.coef, s, b, n, m)

    def _calibrate_one(self, s: float, b: float, n: float, m: float) -> float:
        """``calibrate`` for one network in plain floats (the search's hot path)."""
        if self.form is None:
            return s
        c = self._coef_list
        out = c[-1] + sum(ci * x for ci, x in zip(c, _features(self.form, s, b, n, m, math.log)))
        return math.exp(out) if self.form == "loglog" else out

    def predict_batch_ms(self, arch) -> float:
        """Calibrated time of one batch of the profile's batch size, in ms."""
        if self._structure_space and isinstance(arch, Structure):
            return self._calibrate_one(*self._structure_features(arch))
        hit = self._arch_cache.get(arch)  # other spaces: whole-architecture cache
        if hit is None:
            hit = self._calibrate_one(*self.features(arch))
            if len(self._arch_cache) > 200_000:
                self._arch_cache.clear()
            self._arch_cache[arch] = hit
        return hit

    def predict_ms(self, arch) -> float:
        """Calibrated per-image latency in ms (batch time / batch)."""
        return self.predict_batch_ms(arch) / self.batch

    def predict_many(self, archs) -> np.ndarray:
        """Per-image latency (ms) of many architectures."""
        return np.fromiter((self.predict_batch_ms(a) for a in archs), dtype=float) / self.batch
