"""How a network is chosen: zero-shot proxies and the latency-constrained evolutionary search.

    from hwnas.search import Budgets, SearchConfig, search
    summary = search(SearchConfig(space="cifar32", iterations=200, budgets=Budgets(params=1e6)), "runs/c1m")
"""

from hwnas.search.budgets import Budgets
from hwnas.search.evolution import SearchConfig, search
from hwnas.search.proxies import get_proxy, proxy_names

__all__ = ["Budgets", "SearchConfig", "get_proxy", "proxy_names", "search"]
