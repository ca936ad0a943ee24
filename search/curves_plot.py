"""Drawing the curves of :func:`hwnas.search.curves.sweep_curves` (matplotlib, Agg): nothing here computes a figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hwnas.atomic import atomic_write

COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")
MARKERS = ("o", "s", "^", "D", "v", "P")


def proxy_name(proxy: str, width: int = 34) -> str:
    """A legend label: a proxy's name, an expression shortened to ``width`` characters."""
    text = str(proxy)
    return text if len(text) <= width else text[:width - 1] + "…"


def _figure(panels: int, width: float = 6.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(width * panels, 4.8), dpi=120, squeeze=False)
    return plt, fig, list(axes[0])


def _save(plt, fig, out: Path, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(Path(out), lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


def nb201(found: pd.DataFrame, front: pd.DataFrame, table: pd.DataFrame, prof, device: str, dataset: str,
          out: Path, cells_frame: pd.DataFrame) -> None:
    """Left: every cell, the true front and the found cells; right: regret per budget, mean ± std (min–max band)."""
    plt, fig, (ax, bx) = _figure(2)
    ax.scatter(cells_frame["latency_ms"], cells_frame[dataset], s=2, color="0.75", alpha=0.35, rasterized=True,
               label=f"all {len(cells_frame):,} NAS-Bench-201 cells")
    ax.step(front["latency_ms"], front[dataset], where="post", color="black", lw=1.2,
            label="true Pareto front (all cells)")
    for b in sorted(found["budget_ms"].dropna().unique()):
        ax.axvline(b, color="0.5", ls=":", lw=0.8)
    for i, (proxy, group) in enumerate(found.groupby("proxy", sort=True)):
        ax.scatter(group["latency_ms"], group["accuracy"], s=26, marker=MARKERS[i % 6], color=COLORS[i % 6],
                   edgecolor="white", lw=0.5, zorder=3, label=f"found: {proxy_name(proxy)}")
        t = table[table["proxy"] == proxy]
        bx.errorbar(t["budget_ms"], t["regret_mean"], yerr=t["regret_std"], marker=MARKERS[i % 6],
                    color=COLORS[i % 6], capsize=3, label=f"{proxy_name(proxy)} (mean ± std over seeds)")
        bx.fill_between(t["budget_ms"], t["regret_min"], t["regret_max"], color=COLORS[i % 6], alpha=0.12)
    low = min(found["accuracy"].min(), front.loc[front["latency_ms"] >= found["latency_ms"].min() * 0.9,
                                                 dataset].min())
    ax.set_ylim(low - 2, cells_frame[dataset].max() + 1)
    ax.set_xlim(cells_frame["latency_ms"].min() * 0.9, max(found["budget_ms"].max() * 1.25, 0.5))
    ax.set_xlabel(f"predicted latency (ms/image) on {device}", fontsize=8)
    ax.set_ylabel(f"NAS-Bench-201 trained accuracy, {dataset} (%)")
    ax.set_title("found cells vs the true front (dotted: budgets)", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    bx.axhline(0, color="black", lw=0.8)
    bx.set_xlabel("latency budget (ms/image, predicted by the profile)", fontsize=8)
    bx.set_ylabel(f"regret (accuracy points below the best cell that fits, {dataset})", fontsize=8)
    bx.set_title("regret per budget (band: min–max over seeds; 0 = best cell found)", fontsize=9)
    bx.legend(loc="upper left", fontsize=7)
    bx.grid(alpha=0.3)
    _save(plt, fig, out, f"NAS-Bench-201 latency sweep — profile {prof.name}")


def structure(found: pd.DataFrame, baselines: pd.DataFrame, front_index, prof, device: str, out: Path,
              published: bool, space_name: str) -> None:
    """Baselines (ZenNet zoo predicted, torchvision measured) with their front; found networks by score or
    trained top-1; and, unless the profile is in their convention, the zoo at its published V100 latencies."""
    plt, fig, axes = _figure(3 if published else 2, width=5.4)
    ax, bx = axes[0], axes[1]
    if len(baselines):
        for kind, marker, color, label in (("zennet", "o", "tab:red", "ZenNet zoo (latency predicted)"),
                                           ("torchvision", "s", "tab:blue", "torchvision (latency measured)")):
            part = baselines[baselines["kind"] == kind]
            if len(part):
                ax.scatter(part["latency_ms"], part["accuracy"], marker=marker, s=22, color=color, label=label,
                           zorder=3)
        front = baselines.loc[list(front_index)].sort_values("latency_ms")
        ax.step(front["latency_ms"], front["accuracy"], where="post", color="black", lw=1, label="Pareto front")
        for row in front.itertuples():
            ax.annotate(str(row.name).replace("zennet_imagenet1k_", "").replace("_res224", ""),
                        (row.latency_ms, row.accuracy), fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.set_xscale("log")
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.text(0.5, 0.5, "no baseline the profile can predict or this machine can measure",
                ha="center", va="center", fontsize=8, transform=ax.transAxes, wrap=True)
    ax.set_xlabel(f"latency (ms/image, log scale)\non {device}", fontsize=7)
    ax.set_ylabel("ImageNet-1K top-1 (%, published)")
    ax.set_title("baselines on the profile's device", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3, which="both")
    trained = found["trained_top1"].notna().any() if "trained_top1" in found else False
    y = "trained_top1" if trained else "score"
    for i, (proxy, group) in enumerate(found.groupby("proxy", sort=True)):
        part = group[group[y].notna()]
        bx.scatter(part["latency_ms"], part[y], marker=MARKERS[i % 6], color=COLORS[i % 6], s=26,
                   label=f"found: {proxy_name(proxy)}")
    for b in sorted(found["budget_ms"].dropna().unique()):
        bx.axvline(b, color="0.5", ls=":", lw=0.8)
    bx.set_xlabel(f"predicted latency (ms/image)\non {device}", fontsize=7)
    bx.set_ylabel("trained top-1 (%)" if trained else "proxy score of the found network (not an accuracy)")
    bx.set_title("found networks (dotted: budgets)", fontsize=9)
    bx.legend(loc="lower right", fontsize=7)
    bx.grid(alpha=0.3)
    if published:
        cx = axes[2]
        predicted = int((baselines["kind"] == "zennet").sum()) if len(baselines) else 0
        from hwnas.models import zoo as zoo_mod

        rows = sorted((m.latency_ms_v100_fp16_b64, m.top1, n, m.use_se) for n, m in zoo_mod.models().items()
                      if m.latency_ms_v100_fp16_b64 and m.resolution == 224)
        for se, marker, label in ((False, "o-", "ZenNet latency* (published)"), (True, "^-", "ZenNet flops*_SE "
                                                                                  "(published)")):
            part = [r for r in rows if r[3] == se]
            if part:
                cx.plot([r[0] for r in part], [r[1] for r in part], marker, color="tab:gray" if not se else
                        "tab:olive", label=label)
        for x_, y_, n, _se in rows:
            cx.annotate(n.replace("zennet_imagenet1k_", "").replace("_res224", ""), (x_, y_), fontsize=6,
                        xytext=(3, -8), textcoords="offset points")
        cx.set_xlabel("published latency (ms/image, V100 FP16 batch 64, by ZenNAS)", fontsize=7)
        cx.set_ylabel("ImageNet-1K top-1 (%, published)")
        cx.set_title(f"published, not measured here ({predicted} of them predicted on the left)", fontsize=9)
        cx.legend(loc="lower right", fontsize=7)
        cx.grid(alpha=0.3)
    _save(plt, fig, out, f"accuracy–latency, space {space_name} — profile {prof.name}")

