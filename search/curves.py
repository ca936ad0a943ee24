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

from hwnas.atomic import atomic_write
from hwnas.errors import HwnasError, one_line
from hwnas.search.regret import pareto_front
from hwnas.search.runs import read_json

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


# --------------------------------------------------------------------------- curves of sweeps (hwnas curves DIR...)


def found_networks(folders: list[str | Path]) -> tuple[pd.DataFrame, str, str | None]:
    """The best network of every search in ``folders`` (sweep folders or single search folders), as
    (rows: proxy, budget_ms, seed, best_structure, score, source; their space; the profile they searched with)."""
    from hwnas.search.runs import is_run, read_run
    from hwnas.search.sweep import SWEEP, read_sweep

    if not folders:
        raise HwnasError("no folder given; expected hwnas sweep --out folders or search --out folders")
    frames, spaces, profiles = [], set(), set()
    for folder in folders:
        folder = Path(folder)
        if (folder / SWEEP).is_file():
            record, frame = read_sweep(folder)
            shared = record.get("shared", {})
            spaces.add(shared.get("space"))
            profiles.add(shared.get("profile"))
            frames.append(frame.assign(source=str(folder)))
        elif is_run(folder):
            run = read_run(folder)
            summary = read_json(run.summary_path)
            spaces.add(run.space)
            profiles.add(run.config.get("profile"))
            frames.append(pd.DataFrame([{"proxy": run.config.get("proxy"), "seed": run.config.get("seed"),
                                         "budget_ms": (run.config.get("budgets") or {}).get("latency_ms"),
                                         "best_structure": run.structure, "score": summary.get("score"),
                                         "source": str(folder)}]))
        else:
            raise HwnasError(f"{folder}: neither a sweep (no sweep.json) nor a search folder (no best.txt); "
                             "expected the --out folder of hwnas sweep or hwnas search")
    if len(spaces) != 1:
        raise HwnasError(f"the folders searched different spaces ({', '.join(sorted(map(str, spaces)))}); "
                         "expected folders of one space")
    profile = profiles.pop() if len(profiles) == 1 else None
    return pd.concat(frames, ignore_index=True), spaces.pop(), profile


def _trained(folders: list[str | Path]) -> dict[str, float]:
    """structure -> top-1 from ``hwnas train`` output folders (their result.json)."""
    out = {}
    for folder in folders:
        result = read_json(Path(folder) / "result.json") if (Path(folder) / "result.json").is_file() else None
        if result is None or "structure" not in result or "top1" not in result:
            raise HwnasError(f"--trained {folder}: no result.json with structure and top1; expected an hwnas train "
                             "--out folder")
        out[result["structure"]] = float(result["top1"])
    return out


def _v100_convention(prof) -> bool:
    """Whether ``prof`` is a V100, FP16, batch-64 profile: the convention of ZenNet's published latencies."""
    device = str(prof.metadata.get("device", {}).get("name", ""))
    return "v100" in device.lower() and prof.precision == "fp16" and prof.batch == 64


def _zoo(space, prof, predictor) -> tuple[pd.DataFrame, list[str]]:
    """The zoo networks of ``space``'s resolution at the latency ``prof`` predicts; notes for those left out."""
    import math

    from hwnas.models import zoo

    rows, notes = [], []
    for name, m in zoo.models().items():
        if m.resolution != space.resolution or m.top1 != m.top1:
            continue
        try:
            ms = float(predictor.predict_ms(m.structure))
        except HwnasError as err:
            ms, why = float("nan"), one_line(err)
        else:
            why = "the profile has no figure for one of its parts (infinite latency)"
        if not math.isfinite(ms):
            notes.append(f"ZenNet {name} left out: profile {prof.name} cannot predict it ({why})")
            continue
        if m.use_se:
            notes.append(f"ZenNet {name} left out: it has SE blocks, which its structure string (and so the "
                         "prediction) does not carry")
            continue
        rows.append({"kind": "zennet", "name": name, "structure": str(m.structure), "latency_ms": ms,
                     "accuracy": m.top1, "published_v100_ms": m.latency_ms_v100_fp16_b64})
    return pd.DataFrame(rows), notes


def _torchvision(prof, max_gflops, cache_dir, on_progress) -> tuple[pd.DataFrame, list[str]]:
    from hwnas.errors import ProfileError
    from hwnas.latency import reference_models

    try:
        prof.check(host=True)
    except ProfileError as err:
        return pd.DataFrame(), [f"torchvision models left out: they can only be measured on the profile's device; "
                                f"{one_line(err)}"]
    rows = reference_models.measure(prof, reference_models.catalog(max_gflops), cache_dir, on_progress)
    notes = [f"torchvision {r['name']} left out: {r['error']}" for r in rows if "error" in r]
    frame = pd.DataFrame([{"kind": "torchvision", "name": r["name"], "latency_ms": r["measured_ms"],
                           "accuracy": r["top1"], "gflops": r["gflops"], "resolution": r["resolution"]}
                          for r in rows if "measured_ms" in r])
    if max_gflops is not None:
        notes.append(f"torchvision models above {max_gflops:g} GFLOPs left out (--max-gflops)")
    return frame, notes


def sweep_curves(folders: list[str | Path], out: str | Path = "curves.png", *, csv: str | Path | None = None,
                 profile: str | None = None, dataset: str = "cifar10", torchvision: bool = True,
                 max_gflops: float | None = None, cache_dir: str | Path | None = None,
                 trained: list[str | Path] | None = None, on_progress=None) -> dict:
    """Accuracy–latency curves of the searches in ``folders`` under ``profile`` (default: the one they used).

    NB201: the found cells against the true front of all cells, and the regret table (written to ``csv``,
    default ``<out>-regret.csv``). Structure spaces: the ZenNet zoo at predicted latency, torchvision's models
    measured here when this is the profile's device, the found networks by score (or trained top-1); the
    plotted points go to the CSV beside the PNG. Returns what was drawn, the tables and notes.
    """
    from hwnas.latency.predictor import Predictor
    from hwnas.latency.profile import Profile
    from hwnas.models.spaces.base import get_space
    from hwnas.search import curves_plot

    found, space_name, searched_with = found_networks(folders)
    trained_top1 = _trained(trained or [])
    space = get_space(space_name)
    prof = Profile.for_space(space, profile or searched_with)
    predictor = Predictor(prof)
    found["latency_ms"] = predictor.predict_many([space.parse(s) for s in found["best_structure"]])
    out = Path(out)
    points_csv = out.with_suffix(".csv")
    result = {"png": str(out), "points_csv": str(points_csv), "space": space_name, "profile": prof.name,
              "device": device_describe(prof), "notes": []}
    if _nb201_space(space_name):
        from hwnas.search.regret import accuracy, cells, regret_table, true_front

        found["accuracy"] = [accuracy(s, dataset) for s in found["best_structure"]]
        ref = profile or searched_with  # as given: the key of regret's per-process cache of all cells
        table = regret_table(found, ref, dataset, space_name)
        front = true_front(ref, dataset, space_name)
        curves_plot.nb201(found, front, table, prof, result["device"], dataset, out,
                          cells_frame=cells(ref, space_name))
        regret_csv = Path(csv) if csv else out.with_name(out.stem + "-regret.csv")
        atomic_write(regret_csv, lambda f: table.to_csv(f, index=False), binary=False)
        points = pd.concat([front.rename(columns={"arch": "structure", dataset: "accuracy"})
                            [["structure", "latency_ms", "accuracy"]].assign(kind="true_front"),
                            found.assign(kind="found").rename(columns={"best_structure": "structure"})],
                           ignore_index=True)
        result.update({"regret_csv": str(regret_csv), "dataset": dataset, "regret": table.to_dict("records")})
    else:
        zoo_frame, notes = _zoo(space, prof, predictor)
        tv, tv_notes = (_torchvision(prof, max_gflops, cache_dir, on_progress) if torchvision and
                        space.resolution == 224 else (pd.DataFrame(), []))
        found["trained_top1"] = [trained_top1.get(s, float("nan")) for s in found["best_structure"]]
        baselines = pd.concat([zoo_frame, tv], ignore_index=True)
        front = pareto_front(baselines.rename(columns={"latency_ms": "x"})) if len(baselines) else baselines
        published = not _v100_convention(prof)
        curves_plot.structure(found, baselines, front.index, prof, result["device"], out, published, space_name)
        points = pd.concat([baselines.assign(pareto=baselines.index.isin(front.index)),
                            found.assign(kind="found").rename(columns={"best_structure": "structure"})],
                           ignore_index=True)
        result["notes"] = notes + tv_notes
        result.update({"zennet": int(len(zoo_frame)), "torchvision": int(len(tv)),
                       "pareto": baselines.loc[front.index, "name"].tolist() if len(baselines) else []})
        if csv:
            atomic_write(Path(csv), lambda f: points.to_csv(f, index=False), binary=False)
            result["csv"] = str(csv)
    atomic_write(points_csv, lambda f: points.to_csv(f, index=False), binary=False)
    result["found"] = found.to_dict("records")
    return result


def device_describe(prof) -> str:
    from hwnas.latency.device import describe

    s = prof.settings
    return (f"{describe(prof.metadata.get('device', {}))}, {prof.backend} {s.get('precision', '')}, "
            f"batch {prof.batch}")
