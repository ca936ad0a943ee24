#!/usr/bin/env python3
"""Official ZenNAS get_model_size / get_FLOPs of every zoo model beside hwnas's true counts.

usage: python scripts/compare_official_counts.py ZENNAS_DIR TOOLS_DIR

ZENNAS_DIR is a work tree of github.com/idstcv/ZenNAS; TOOLS_DIR holds
official_common.py (../shared/tools/zennas-reference), which imports the
official code from that tree at run time. SE is counted as each published row
was (counted_with_se). Nothing of the official code is copied into hwnas.
"""

from __future__ import annotations

import contextlib
import io
import sys

from hwnas.models import zoo
from hwnas.models.counts import count


def main(zennas_dir: str, tools_dir: str) -> None:
    sys.path.insert(0, tools_dir)
    from official_common import load_official, read_zoo

    root = load_official(zennas_dir)
    import Masternet

    ours = {name.replace("_SE", ""): m for name, m in zoo.models().items()}
    print(f"{'model':40s} {'official_M':>10s} {'true_M':>9s} {'pub_M':>6s} {'off_flops_M':>11s} "
          f"{'true_flops_M':>12s} {'pub_flops_M':>11s} {'d_off_params_%':>14s} {'d_off_flops_%':>13s}")
    for name, text, classes, _, res in read_zoo(root):
        m = ours[name.replace("_SE", "")]
        with contextlib.redirect_stdout(io.StringIO()):  # the official SE blocks print debug lines
            net = Masternet.MasterNet(num_classes=classes, plainnet_struct=text, no_create=True,
                                      use_se=m.counted_with_se)
        size, flops = net.get_model_size() / 1e6, net.get_FLOPs(res) / 1e6
        c = count(m.structure, m.resolution, m.num_classes, use_se=m.counted_with_se)
        print(f"{m.name.removeprefix('zennet_'):40s} {size:10.4f} {c.params / 1e6:9.4f} {m.params_m:6g} "
              f"{flops:11.2f} {c.flops / 1e6:12.2f} {m.flops_m:11g} "
              f"{100 * (size - m.params_m) / m.params_m:+14.2f} {100 * (flops - m.flops_m) / m.flops_m:+13.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    main(sys.argv[1], sys.argv[2])
