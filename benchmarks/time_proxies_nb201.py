"""Seconds per evaluation of proxies on NAS-Bench-201 cells: median of 5 cells after a warm-up, one thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/time_proxies_nb201.py zen,meco,az_nas
"""

import time, statistics, sys, torch
torch.set_num_threads(1)
from hwnas.models.spaces.base import get_space
from hwnas.models.spaces.nb201 import accuracy_table
from hwnas.search.proxy_bench import sample_archs
from hwnas.search.proxies import get_proxy
from hwnas.errors import ProxyError
space = get_space("nb201")
cells = [space.parse(c) for c in sample_archs(6, 0, accuracy_table())]
names = sys.argv[1].split(",")
get_proxy("zen", batch_size=16).score(space, cells[0])  # first-call warm-up of torch (meta-device build)
for n in names:
    p = get_proxy(n, batch_size=16, seed=0)
    ts = []
    for c in cells:
        t = time.perf_counter()
        try:
            if n == "az_nas":
                p.components(space, c)
            else:
                p.score(space, c)
        except ProxyError:
            pass
        ts.append(time.perf_counter() - t)
    print(f"{n} median {statistics.median(ts[1:]):.3f} s (min {min(ts[1:]):.3f}, max {max(ts[1:]):.3f}) over 5 cells")
