"""Accuracy–latency curves: known accuracies against the latency a profile predicts.

Points with a real accuracy come from the packaged data: every NAS-Bench-201
cell (its trained accuracy on one data set) or the ZenNet zoo (published top-1).
The x axis is the per-image latency the profile predicts (or FLOPs / params
when no profile is given). Search results (``--runs``) are marked at their
predicted latency; for NAS-Bench-201 their accuracy is looked up too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hwnas.errors import HwnasError

X_LABELS = {"latency": "predicted latency (ms/image)", "flops": "FLOPs (M)", "params": "parameters (M)"}


def _nb201_space(space_name: str) -> bool:
    return space_name.startswith("nb201")


def points(space_name: str, profile: str | None = None, dataset: str = "cifar10", x: str = "latency") -> pd.DataFrame:
    """Columns: structure, name, accuracy, x (by the chosen measure)."""
    from hwnas.models.spaces.base import get_space

    if x not in X_LABELS:
        raise HwnasError(f"unknown x axis {x!r}; expected one of: {', '.join(X_LABELS)}")
    space = get_space(space_name)
    if _nb201_space(space_name):
        from hwnas.models.spaces.nb201 import accuracy_table

        table = accuracy_table()
        if dataset not in table.columns:
            raise HwnasError(f"no NAS-Bench-201 accuracy for {dataset!r}; expected one of: cifar10, cifar100, imagenet16")
        df = pd.DataFrame({"structure": table["arch"], "name": table["arch"], "accuracy": table[dataset]})
    else:
        from hwnas.models import zoo

        rows = [{"structure": str(m.structure), "name": name, "accuracy": m.top1}
                for name, m in zoo.models().items()
                if m.resolution == space.resolution and not m.use_se and m.top1 == m.top1]
        if not rows:
            raise HwnasError(f"no zoo network with a published accuracy fits space {space_name!r}")
        df = pd.DataFrame(rows)
    df["x"] = measure(space, df["structure"], profile, x)
    return df


def measure(space, structures, profile: str | None, x: str) -> np.ndarray:
    if x == "latency":
        from hwnas.latency.predictor import Predictor
        from hwnas.latency.profile import Profile

        predictor = Predictor(Profile.for_space(space, profile))
        return predictor.predict_many([space.parse(s) for s in structures])
    counts = [space.counts(space.parse(s)) for s in structures]
    return np.array([(c.flops if x == "flops" else c.params) / 1e6 for c in counts])


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Points no other point beats on both axes (lower x, higher accuracy), by increasing x."""
    ordered = df.sort_values(["x", "accuracy"], ascending=[True, False])
    best, keep = -np.inf, []
    for idx, acc in zip(ordered.index, ordered["accuracy"]):
        if acc > best:
            keep.append(idx)
            best = acc
    return ordered.loc[keep]


def run_points(space_name: str, runs: list[str], profile: str | None, x: str, dataset: str) -> pd.DataFrame:
    from hwnas.models.spaces.base import get_space
    from hwnas.search.runs import read_run

    space = get_space(space_name)
    rows = []
    for folder in runs:
        run = read_run(folder)
        if run.space != space_name:
            raise HwnasError(f"--runs {folder}: searched space {run.space!r}, the curve is for {space_name!r}")
        rows.append({"run": str(folder), "structure": run.structure})
    df = pd.DataFrame(rows, columns=["run", "structure"])
    if len(df):
        df["x"] = measure(space, df["structure"], profile, x)
        if _nb201_space(space_name):
            from hwnas.models.spaces.nb201 import accuracy_table

            acc = accuracy_table().set_index("arch")[dataset]
            df["accuracy"] = [float(acc.get(s, np.nan)) for s in df["structure"]]
    return df


def curves(space_name: str, out: str | Path, profile: str | None = None, dataset: str = "cifar10",
           x: str = "latency", runs: list[str] | None = None) -> dict:
    """Write the PNG (and the points as CSV next to it); return what was drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hwnas.atomic import atomic_write

    df = points(space_name, profile, dataset, x)
    front = pareto_front(df)
    marks = run_points(space_name, runs or [], profile, x, dataset)

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(df["x"], df["accuracy"], s=4 if len(df) > 500 else 18, alpha=0.35, color="tab:gray",
               label=f"{'NAS-Bench-201 cells' if _nb201_space(space_name) else 'ZenNet zoo'} ({len(df)})")
    ax.plot(front["x"], front["accuracy"], "-o", ms=3, color="tab:blue", label="Pareto front")
    for row in marks.itertuples():
        if "accuracy" in marks.columns and row.accuracy == row.accuracy:
            ax.scatter([row.x], [row.accuracy], marker="*", s=160, color="tab:red", zorder=3)
        else:
            ax.axvline(row.x, color="tab:red", ls="--", lw=1)
        ax.annotate(Path(row.run).name, (row.x, ax.get_ylim()[0]), rotation=90, fontsize=7, color="tab:red",
                    va="bottom")
    ax.set_xlabel(X_LABELS[x] + (f" — {profile or 'default profile'}" if x == "latency" else ""))
    ax.set_ylabel(f"accuracy (%) — {dataset if _nb201_space(space_name) else 'published top-1'}")
    ax.set_title(f"accuracy vs {x}: space {space_name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    atomic_write(out, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    csv = out.with_suffix(".csv")
    atomic_write(csv, lambda f: df.assign(pareto=df.index.isin(front.index)).to_csv(f, index=False), binary=False)
    return {"png": str(out), "csv": str(csv), "points": int(len(df)), "pareto_points": int(len(front)),
            "runs": marks.to_dict("records")}
