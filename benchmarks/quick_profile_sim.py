"""Where a quick profile loses accuracy, simulated from a full profile of the same machine.

The quick profile's sampled kernels are given the full profile's times for them (as if timed by the quick
profile), every other kernel is carried over from the source profile by the ratio model (``transfer_table``),
kernels the source lacks are taken from the full profile, and the calibration is fitted on a chosen set of
networks measured on the machine. Each variant is checked on the networks of ``hwnas latency validate --json``
outputs measured on the same machine. Nothing is timed here.

    python benchmarks/quick_profile_sim.py --full profiles/ort-cpu1-b1-imagenet224-zen5 \\
        --quick local-profiles/quick-imagenet224 --validations val-seed1.json val-seed2.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math

import numpy as np
import pandas as pd

from hwnas.latency import transfer
from hwnas.latency.calibration import apply_calibration, fit_calibration
from hwnas.latency.part_table import channel_block
from hwnas.latency.predictor import Predictor
from hwnas.latency.profile import PART_COLUMNS, Profile


def check(table: pd.DataFrame, metadata: dict, networks: list[dict], validations: list[dict]) -> str:
    """The calibration fitted on ``networks`` over ``table``; within ±10 % and MAPE on each validation."""
    predictor = Predictor(Profile(table=table, metadata={**copy.deepcopy(metadata), "calibration": {}}))
    features = lambda archs: np.array([list(predictor.features(a)) for a in archs])  # noqa: E731
    fit = fit_calibration(features([n["arch"] for n in networks]), [n["measured_batch_ms"] for n in networks])
    out = [fit["form"]]
    for v in validations:
        pred = apply_calibration(fit["form"], fit["coef"], features([r["arch"] for r in v["networks"]]))
        err = pred / np.array([r["measured_ms"] for r in v["networks"]]) - 1
        out.append(f"±10 %: {np.mean(np.abs(err) <= 0.1):.0%}, MAPE {100 * np.mean(np.abs(err)):.1f} %")
    return " | ".join(out)


def carried_over(source: Profile, full: Profile, k: int, shrink: float) -> tuple[pd.DataFrame, dict]:
    truth = full.table.set_index(PART_COLUMNS)
    keys = [tuple(getattr(p, c) for c in PART_COLUMNS) for p in transfer.stratified_parts(source.table, k, 0)]
    measured = truth.loc[[key for key in keys if key in truth.index]].reset_index()
    transfer.POSITION_SHRINK = shrink
    table, fit = transfer.transfer_table(source.table, measured, channel_block(full.metadata))
    missing = ~full.table.set_index(PART_COLUMNS).index.isin(table.set_index(PART_COLUMNS).index)
    return pd.concat([table, full.table[missing][table.columns]]).reset_index(drop=True), fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", required=True, help="full profile of the machine")
    ap.add_argument("--quick", required=True, help="quick profile of the machine (its 60 networks)")
    ap.add_argument("--source", default="ort-cpu1-b1-imagenet224", help="the quick profile's source")
    ap.add_argument("--validations", nargs="+", required=True, help="`hwnas latency validate --json` outputs")
    ap.add_argument("--parts", default="320,640,1280", help="kernels sampled, comma-separated")
    args = ap.parse_args()
    full, quick, source = Profile.load(args.full), Profile.load(args.quick), Profile.load(args.source)
    validations = [json.load(open(path)) for path in args.validations]
    nets = {"quick 60": quick.calibration["networks"], "full 120": full.calibration["networks"][::2],
            "full 240": full.calibration["networks"]}
    meta = quick.metadata
    for label, networks in nets.items():
        print(f"full table, calibrated on {label}: {check(full.table, meta, networks, validations)}")
    shipped = transfer.POSITION_SHRINK
    for k in (int(x) for x in args.parts.split(",")):
        for shrink, what in ((math.inf, "ratio model alone"), (shipped, "with position offsets")):
            table, fit = carried_over(source, full, k, shrink)
            for label, networks in nets.items():
                print(f"{k} kernels, {what} (kernels' leave-one-out ±10 %: {fit['loo_within_10pct']:.0%}), "
                      f"calibrated on {label}: {check(table, meta, networks, validations)}")
    transfer.POSITION_SHRINK = shipped


if __name__ == "__main__":
    main()
