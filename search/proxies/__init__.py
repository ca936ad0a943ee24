"""Zero-shot proxies: one small protocol, a registry of names, hybrid expressions.

    from hwnas.search.proxies import get_proxy, proxy_names
    proxy = get_proxy("zen", resolution=32, batch_size=64, seed=0)
    result = proxy.score(space, arch)   # ProxyResult(value, parts); ProxyError unless finite
"""

from hwnas.search.proxies.base import Proxy, ProxyResult, get_proxy, proxy_names, register_proxy

__all__ = ["Proxy", "ProxyResult", "get_proxy", "proxy_names", "register_proxy"]
