"""Fitting a hybrid proxy on benchmark scores, and reporting it on cells it was not fitted on.

``fit_hybrid`` finds the weights of a linear combination of terms (expressions
over the score columns of the scores.csv that ``hwnas proxies bench --out``
writes) that maximise Spearman's ρ with the accuracy. With ``holdout`` the
last fraction of the rows is left out of the fit: the rows are the benchmark's
seeded random sample in sample order, so this is a random split (with 3,000
rows and ``holdout=0.5``: fitted on cells 1–1,500 of the sample, reported on
cells 1,501–3,000). ``report`` evaluates the printed expression, as text, on
any scores table (another data set's accuracies for the same cells), on all of
its rows and on the held-out cells only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

from hwnas.errors import HwnasError, ProxyError, one_line
from hwnas.search.proxies.hybrid import evaluate_expression, parse_expression, referenced_names
from hwnas.search.proxy_bench import metrics, spearman


def read_scores(path, target: str = "accuracy") -> pd.DataFrame:
    """A benchmark's scores.csv (as ``run_bench`` writes it); HwnasError if it is no such table."""
    try:
        scores = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = one_line(err, 200)
        raise HwnasError(f"{path} is not a readable CSV table ({reason}); expected the scores.csv of "
                         "`hwnas proxies bench --out`") from None
    if target not in scores.columns:
        raise HwnasError(f"{path} has no {target!r} column; expected the scores.csv of `hwnas proxies bench --out`")
    return scores


def expression_values(scores: pd.DataFrame, text: str) -> np.ndarray:
    """``text`` evaluated on every row (NaN where a value is missing or the expression undefined)."""
    tree = parse_expression(text)
    names = referenced_names(tree)
    missing = [n for n in names if n not in scores.columns]
    if missing:
        raise HwnasError(f"the scores have no column {', '.join(missing)}; benchmark it with "
                         f"`hwnas proxies bench --proxies {','.join(missing)}`")
    out = np.full(len(scores), np.nan)
    columns = {n: pd.to_numeric(scores[n], errors="coerce").to_numpy(float) for n in names}
    for i in range(len(scores)):
        vals = {n: columns[n][i] for n in names}
        if not all(math.isfinite(v) for v in vals.values()):
            continue
        try:
            out[i] = evaluate_expression(tree, vals, text)
        except ProxyError:
            continue
    return out


def _target(scores: pd.DataFrame, target: str) -> np.ndarray:
    try:
        return scores[target].to_numpy(float)
    except (ValueError, TypeError):
        raise HwnasError(f"the {target!r} column is not numeric; expected the scores.csv of "
                         "`hwnas proxies bench`") from None


def fit_hybrid(scores: pd.DataFrame, terms: list[str], target: str = "accuracy", holdout: float = 0.0) -> dict:
    """Weights of a linear combination of ``terms`` (expressions over the score columns) maximising
    Spearman's ρ with ``target`` on the first ``1 - holdout`` of the rows; returns the expression, its
    fitted ρ and, with ``holdout``, the four metrics on the held-out rows and their ``arch`` names.

    Start: least squares of the accuracy ranks on the standardised terms;
    then Nelder–Mead on −ρ. Weights are rescaled to raw units and normalised
    so that the first term's weight is 1.
    """
    if not terms:
        raise HwnasError("no terms to fit; expected ';'-separated expressions over the score columns")
    if not (isinstance(holdout, (int, float)) and 0.0 <= holdout < 1.0):
        raise HwnasError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    n_fit = len(scores) - int(round(holdout * len(scores)))
    fitted, held = scores.iloc[:n_fit], scores.iloc[n_fit:]
    x = np.column_stack([expression_values(fitted, t) for t in terms])
    y = _target(fitted, target)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) < len(terms) + 3:
        raise HwnasError(f"too few complete rows ({len(y)}) to fit {len(terms)} terms")
    with np.errstate(all="ignore"):  # an overflow is reported below, as one error
        mu, sd = x.mean(axis=0), x.std(axis=0)
        sd[sd == 0] = 1.0
        z = (x - mu) / sd
    if not np.isfinite(z).all():  # LAPACK would print its own complaint before failing
        raise HwnasError("the terms cannot be fitted: their values overflow when standardised; expected terms of "
                         "moderate size (take log() of large ones)")
    ranks = stats.rankdata(y)
    try:
        w0, *_ = np.linalg.lstsq(np.c_[z, np.ones(len(z))], ranks, rcond=None)
    except np.linalg.LinAlgError as err:
        raise HwnasError(f"the terms cannot be fitted ({err}); expected terms with finite, varying values") from None
    w0 = w0[:-1]

    def loss(w):
        return -spearman(z @ w, y)

    best = optimize.minimize(loss, w0, method="Nelder-Mead",
                             options={"maxiter": 2000, "xatol": 1e-4, "fatol": 1e-6})
    w = best.x if -best.fun >= -loss(w0) else w0
    raw = w / sd
    if raw[0] != 0:
        raw = raw / abs(raw[0])
    expression = "+".join(f"({c:.6g})*{t}" if i else f"{c:.6g}*{t}" for i, (c, t) in enumerate(zip(raw, terms)))
    expression = expression.replace("+(-", "-(")
    result = {"expression": expression, "weights": dict(zip(terms, map(float, raw))),
              "spearman": spearman(x @ raw, y), "n": int(len(y)), "fitted_rows": int(n_fit)}
    if len(held):
        result["held_out"] = report(held, expression, target)
        result["held_out_archs"] = held["arch"].tolist() if "arch" in held.columns else []
    return result


def report(scores: pd.DataFrame, expression: str, target: str = "accuracy", archs=None) -> dict:
    """The four metrics of ``expression`` on ``scores`` (only the rows whose ``arch`` is in ``archs`` if
    given); a row it cannot score ranks last, as the search treats it."""
    if archs is not None:
        if "arch" not in scores.columns:
            raise HwnasError("the scores have no 'arch' column to pick the held-out cells by; expected the "
                             "scores.csv of `hwnas proxies bench --out`")
        scores = scores[scores["arch"].isin(set(archs))]
    if len(scores) < 3:
        raise HwnasError(f"only {len(scores)} rows to report on; expected at least 3")
    return metrics(expression_values(scores, expression), _target(scores, target))


__all__ = ["fit_hybrid", "read_scores", "report", "expression_values"]
