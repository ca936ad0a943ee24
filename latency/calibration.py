"""Calibration: a model from a network's summed part costs (its :class:`Features`) to its measured time.

Fitted on whole networks measured end to end while profiling, in the form the
data supports (chosen by leave-one-out error among affine, affine + boundary
bytes, affine + boundary bytes + part count, the same + weight bytes
(+ squared boundary bytes), log-log, affine + misaligned time, and affine +
misaligned time + boundary bytes; for a finite space profiled with ONNX
Runtime on CPU also ``graph``: + boundary bytes + the operator counts of the
optimized graph and the cell's fan-out, see :mod:`hwnas.latency.graph`), and
stored in the profile.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

from hwnas.errors import ProfileError

PREDICTOR_VERSION = 2
CALIBRATION_FORMS = ("affine", "boundary", "boundary_count", "weights", "weights_b2", "loglog", "misaligned",
                     "misaligned_boundary", "graph")


class Features(NamedTuple):
    """A network's features before calibration: sums over its parts."""

    raw_sum_ms: float  # part batch times
    boundary_mb: float  # activation MB handed into the parts (a separately timed part pays for receiving and
    # returning its activations, a whole network does not)
    parts: int  # number of parts
    misaligned_ms: float  # part time spent in misaligned convolutions
    weight_mb: float  # the parts' weights (a part timed alone keeps its weights in cache from run to run; in a
    # whole network the other layers evict them)
    boundary_mb2: float  # sum of each part's boundary MB squared (a hand-off larger than the caches costs more
    # per byte)


# Short names of the Features fields, in order, as the forms name them.
FEATURES = ("s", "b", "n", "m", "w", "b2")

# The features each calibration form is linear in (plus an intercept); "log_s" is log(raw sum), "graph" the
# architecture's graph features (hwnas.latency.graph: a finite space's profile on ONNX Runtime CPU only).
FORM_FEATURES = {
    "affine": ("s",),
    "boundary": ("s", "b"),
    "boundary_count": ("s", "b", "n"),
    "weights": ("s", "b", "n", "w"),
    "weights_b2": ("s", "b", "n", "w", "b2"),
    "loglog": ("log_s",),
    "misaligned": ("s", "m"),
    "misaligned_boundary": ("s", "m", "b"),
    "graph": ("s", "b", "graph"),
}
# Ridge penalty of the graph form (on the relative-error-weighted design; the intercept is not penalized):
# the best of 0.03-3 in 10-fold cross validation on 400 and 1000 measured NB201 networks.
GRAPH_RIDGE = 0.3


def form_terms(form: str, f, log):
    """The terms of ``form`` from features ``f`` (indexed in :data:`FEATURES` order: floats of one network,
    or columns of many), graph features aside."""
    if form not in FORM_FEATURES:
        raise ProfileError(f"unknown calibration form {form!r}; expected one of {', '.join(CALIBRATION_FORMS)}")
    return [log(f[0]) if name == "log_s" else f[_COLUMN[name]] for name in FORM_FEATURES[form] if name != "graph"]


_COLUMN = {name: i for i, name in enumerate(FEATURES)}


def _columns(F) -> np.ndarray:
    F = np.asarray(F, dtype=float)
    F = F.reshape(1, -1) if F.ndim == 1 else F
    if F.shape[1] != len(FEATURES):
        raise ProfileError(f"expected {len(FEATURES)} features per network ({', '.join(FEATURES)}), got {F.shape[1]}")
    return F


def _design(form: str, F, x=None) -> np.ndarray:
    F = _columns(F)
    cols = form_terms(form, F.T, np.log)
    if "graph" in FORM_FEATURES[form]:
        if x is None:
            raise ProfileError("the graph calibration form needs the architectures' graph features")
        cols += list(np.asarray(x, dtype=float).reshape(len(F), -1).T)
    return np.column_stack(cols + [np.ones(len(F))])


def _fit(form: str, F, y, x=None) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    X = _design(form, F, x)
    if form == "loglog":
        coef, *_ = np.linalg.lstsq(X, np.log(y), rcond=None)
        return coef
    A = X / y[:, None]  # least squares on relative error
    if "graph" in FORM_FEATURES[form]:
        penalty = GRAPH_RIDGE * np.eye(A.shape[1])
        penalty[-1, -1] = 0.0
        return np.linalg.solve(A.T @ A + penalty, A.T @ np.ones_like(y))
    coef, *_ = np.linalg.lstsq(A, np.ones_like(y), rcond=None)
    return coef


def apply_calibration(form: str, coef, F, x=None) -> np.ndarray:
    """Calibrated batch ms of networks with features ``F`` (one row per network, :data:`FEATURES` order)."""
    F = _columns(F)
    X = _design(form, F, None if x is None else np.asarray(x, dtype=float).reshape(len(F), -1))
    out = X @ np.asarray(coef, dtype=float)
    return np.exp(out) if form == "loglog" else out


def fit_calibration(F, y, forms: Iterable[str] = CALIBRATION_FORMS, x=None) -> dict:
    """Fit every form on features ``F`` (one row per network, :data:`FEATURES` order[, graph features ``x``])
    → measured batch ms; keep the best by leave-one-out.

    Returns a dict with ``form``, ``coef`` and, per form, the leave-one-out
    MAPE and fraction within ±10% (what the choice was based on). The simplest
    form within 0.1 percentage point of the best leave-one-out MAPE wins. The
    graph form is tried only when ``x`` (one row per network) is given.
    """
    F, y = _columns(F), np.asarray(y, dtype=float)
    x = None if x is None else np.asarray(x, dtype=float).reshape(len(F), -1)
    if not np.any(F[:, _COLUMN["m"]]):  # nothing misaligned: those forms would be singular
        forms = [f for f in forms if not f.startswith("misaligned")]
    if not np.any(F[:, _COLUMN["w"]]):  # no weights (a table of bare ops): likewise
        forms = [f for f in forms if not f.startswith("weights")]
    if x is None:
        forms = [f for f in forms if "graph" not in FORM_FEATURES[f]]
    if len(y) < 3:
        raise ProfileError(f"calibration needs at least 3 measured networks, got {len(y)}")
    report = {}
    for form in forms:
        k = _design(form, F[:1], None if x is None else x[:1]).shape[1]
        if len(y) < k + 2:
            continue
        pred = np.empty_like(y)
        for i in range(len(y)):
            k_ = np.arange(len(y)) != i
            xk, xi = (None, None) if x is None else (x[k_], x[i:i + 1])
            pred[i] = apply_calibration(form, _fit(form, F[k_], y[k_], xk), F[i], xi)[0]
        err = np.abs(pred / y - 1)
        report[form] = {"loo_mape": float(err.mean() * 100), "loo_within_10pct": float((err <= 0.10).mean()),
                        "loo_within_5pct": float((err <= 0.05).mean()), "params": k}
    if not report:
        raise ProfileError(f"calibration needs more measured networks than {len(y)} for any form")
    raw_err = np.abs(F[:, 0] / y - 1)
    best = min(r["loo_mape"] for r in report.values())
    form = min((f for f in report if report[f]["loo_mape"] <= best + 0.1), key=lambda f: report[f]["params"])
    coef = _fit(form, F, y, x)
    return {"form": form, "coef": [float(c) for c in coef], "forms": report,
            "raw_sum_mape": float(raw_err.mean() * 100), "raw_sum_within_10pct": float((raw_err <= 0.1).mean()),
            "predictor_version": PREDICTOR_VERSION}
