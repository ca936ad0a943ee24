"""The proxy protocol, its registry, and what every proxy shares.

A proxy turns an architecture of a space into one finite number (larger is
better) plus named parts. Each proxy is one class decorated with
``@register_proxy(name)`` in a module of this package (the registry imports
them all, so a new proxy is one new file); ``get_proxy(name, **options)`` makes one, and a
name that is not registered is read as a hybrid expression of registered
names (``zen+0.5*log(flops)``).

Every proxy takes the same common options: ``resolution`` (default: the
space's), ``batch_size`` (default 64 at 32×32 and below, else 16 — the Zen-NAS
settings), ``repeat`` (mean of that many independent evaluations), ``seed``,
``device`` and ``dtype``. Randomness comes only from a ``torch.Generator``
seeded with ``seed``, so the same seed gives the same score whatever the
global RNG state, and the global RNG state is left untouched.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import nn

from hwnas.errors import HwnasError, ProxyError
from hwnas.registry import Registry

# The largest input batch a proxy builds (batch x 3 x resolution², 1 GiB in float32).
MAX_INPUT_ELEMENTS = 2**28
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass(frozen=True)
class ProxyResult:
    """A finite score and its named parts (e.g. ``zen``, ``e_score``, ``rho``)."""

    value: float
    parts: dict = field(default_factory=dict)


class Proxy(ABC):
    """Base class: common options, repeats, the finiteness check.

    Subclasses set ``name``, list their own keyword options in ``options``
    (name → default) and implement ``evaluate(space, arch, generator)``, one
    independent evaluation returning ``(value, parts)``.
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict] = {}
    # Proxies computed from the architecture alone ignore repeats and seeds.
    deterministic: ClassVar[bool] = False
    # True if the proxy cannot run without real images and labels. None here does: those defined on real
    # data (ZiCo, the NASLib set, grad_norm, snip) run on Gaussian images and uniformly drawn labels.
    needs_data: ClassVar[bool] = False
    # Options that also take a list of numbers, one per stage.
    per_stage: ClassVar[tuple[str, ...]] = ()

    def __init__(self, resolution: int | None = None, batch_size: int | None = None, repeat: int = 1,
                 seed: int = 0, device: str = "cpu", dtype: str = "float32", **specific):
        unknown = sorted(set(specific) - set(self.options))
        if unknown:
            expected = ", ".join(sorted(self.options)) or "none"
            raise HwnasError(f"proxy {self.name!r} has no option {', '.join(unknown)}; its options: {expected}")
        for label, value in (("repeat", repeat), ("batch size", batch_size), ("resolution", resolution)):
            if (value is not None or label == "repeat") and not (_is_int(value) and value >= 1):
                raise HwnasError(f"{label} must be an integer of at least 1, got {value!r}")
        if not _is_int(seed):
            raise HwnasError(f"seed must be an integer, got {seed!r}")
        if dtype not in DTYPES:
            raise HwnasError(f"unknown dtype {dtype!r}; expected one of: {', '.join(DTYPES)}")
        self.resolution = resolution
        self.batch_size = batch_size
        self.repeat = repeat
        self.seed = seed
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise HwnasError(f"device {device!r} is not a torch device; expected e.g. cpu or cuda") from None
        self.dtype = DTYPES[dtype]
        self.dtype_name = dtype
        for key, default in self.options.items():
            setattr(self, key, _checked_option(self, key, default, specific.get(key, default)))

    # -- settings -------------------------------------------------------------
    def settings(self) -> dict:
        """Everything that determines the score (the cache key of the benchmark)."""
        out = {"proxy": self.name, "resolution": self.resolution, "batch_size": self.batch_size,
               "repeat": self.repeat, "seed": self.seed, "dtype": self.dtype_name}
        out.update({k: getattr(self, k) for k in self.options})
        if self.deterministic:
            for k in ("batch_size", "repeat", "seed", "dtype"):
                out.pop(k)
        return out

    def resolution_for(self, space) -> int:
        return self.resolution or space.resolution

    def batch_for(self, space) -> int:
        if self.batch_size:
            return self.batch_size
        return 64 if self.resolution_for(space) <= 32 else 16

    def generator(self, seed: int | None = None) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed if seed is None else seed)
        return g

    # -- scoring --------------------------------------------------------------
    def score(self, space, arch) -> ProxyResult:
        """The mean of ``repeat`` independent evaluations; raises ProxyError unless finite.

        Inside ``hwnas.search.score_cache.use(cache)`` a score (or the reason it failed) is computed once
        per settings and architecture and then read from the cache.
        """
        return self._cached(space, arch, self._score)

    def _cached(self, space, arch, compute, kind: str | None = None) -> ProxyResult:
        """``compute(space, arch)`` through the active score cache (``kind`` tells other results of the same
        settings apart, e.g. a set-relative proxy's components)."""
        from hwnas.search import score_cache

        cache = score_cache.active()
        if cache is None:
            return compute(space, arch)
        settings = self.settings() if kind is None else {**self.settings(), "result": kind}
        key = cache.key(settings, space.name, space.format(arch))
        hit = cache.get(key)
        if hit is not None:
            value, parts, error = hit
            if error is not None:
                raise ProxyError(error)
            return ProxyResult(value, parts)
        try:
            result = compute(space, arch)
        except ProxyError as err:
            cache.put(key, None, {}, str(err))
            raise
        cache.put(key, result.value, result.parts, None)
        return result

    def _score(self, space, arch) -> ProxyResult:
        g = self.generator()
        values, parts_list = [], []
        for _ in range(1 if self.deterministic else self.repeat):
            value, parts = self._evaluate_once(space, arch, g)
            values.append(_finite(self.name, value))
            parts_list.append(parts)
        value = sum(values) / len(values)
        parts = {k: sum(p[k] for p in parts_list) / len(parts_list) for k in parts_list[0]
                 if all(isinstance(p.get(k), (int, float)) for p in parts_list)}
        if len(values) > 1:
            parts["std"] = float(torch.tensor(values, dtype=torch.float64).std().item())
        return ProxyResult(value, parts)

    def _evaluate_once(self, space, arch, generator: torch.Generator, evaluate=None):
        """``evaluate`` (default: :meth:`evaluate`), with the ways a valid but degenerate network (or a batch too
        large for memory) defeats a proxy as a ProxyError."""
        elements = self.batch_for(space) * 3 * self.resolution_for(space) ** 2
        if not self.deterministic and elements > MAX_INPUT_ELEMENTS:
            raise ProxyError(f"proxy {self.name!r}: a batch of {self.batch_for(space)} images of "
                             f"{self.resolution_for(space)}x{self.resolution_for(space)} holds {elements} values; "
                             f"expected at most {MAX_INPUT_ELEMENTS} (a smaller batch size or resolution)")
        try:
            return (evaluate or self.evaluate)(space, arch, generator)
        except RuntimeError as err:
            if not _out_of_memory(err):
                raise
            raise ProxyError(f"proxy {self.name!r} ran out of memory on this network at batch size "
                             f"{self.batch_for(space)}; expected a smaller batch size or resolution") from None
        except OverflowError as err:
            raise ProxyError(f"proxy {self.name!r} overflowed on this network ({err}); the candidate is "
                             "rejected") from None
        except ValueError as err:
            if "Expected more than 1 value per channel" not in str(err):
                raise
            raise ProxyError(f"proxy {self.name!r} cannot be computed for this network at batch size "
                             f"{self.batch_for(space)}: a feature map of 1x1 leaves batch normalisation one value "
                             "per channel; expected a batch size of at least 2") from None

    @abstractmethod
    def evaluate(self, space, arch, generator: torch.Generator) -> tuple[float, dict]:
        """One independent evaluation: ``(value, parts)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings()})"


def _out_of_memory(err: RuntimeError) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err) or (
        "out of memory" in str(err))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checked_option(proxy: "Proxy", key: str, default, value):
    """``value`` if it has the kind of the option's default (a flag, an integer, a finite number, a name; a list
    of finite numbers for a ``per_stage`` option); else HwnasError naming what was expected. A None default
    stands for a number."""
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "True or False"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif default is None or isinstance(default, float):
        per_stage = key in proxy.per_stage
        ok = (value is None and default is None) or _is_number(value) or (per_stage and isinstance(
            value, (list, tuple)) and bool(value) and all(_is_number(v) for v in value))
        expected = "a finite number" + (" or a list of them (one per stage)" if per_stage else "")
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a name"
    else:
        ok, expected = True, ""
    if not ok:
        raise HwnasError(f"proxy {proxy.name!r} option {key}={value!r}: expected {expected}")
    return value


def _finite(name: str, value) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ProxyError(f"proxy {name!r} gave a non-finite score ({value}); the candidate is rejected")
    return value


# -- registry -------------------------------------------------------------------
_PROXIES = Registry("hwnas.search.proxies")  # every module of the package is imported to register its proxies


def register_proxy(name: str) -> Callable[[type[Proxy]], type[Proxy]]:
    """Class decorator: make a proxy available by name."""

    def wrap(cls: type[Proxy]) -> type[Proxy]:
        cls.name = name
        return _PROXIES.register(name)(cls)

    return wrap


def proxy_names() -> list[str]:
    """Registered proxy names (hybrid expressions of them are accepted too)."""
    return _PROXIES.names()


def proxy_class(name: str) -> type[Proxy]:
    cls = _PROXIES.get(name)
    if cls is None:
        raise KeyError(name)
    return cls


def get_proxy(name: str, **options) -> Proxy:
    """A proxy by registered name, or a hybrid expression over registered names."""
    name = name.strip()
    cls = _PROXIES.get(name)
    if cls is not None:
        return cls(**options)
    from hwnas.search.proxies.hybrid import Hybrid

    return Hybrid(name, **options)


# -- building networks for scoring ----------------------------------------------
def _init_gaussian(net: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS initialisation: conv/linear weights N(0,1), biases 0, norm weight 1, bias 0, fresh statistics."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.fill_(1.0)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
                if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
                    m.reset_running_stats()
            elif any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
                _reset_other(m, generator)


def _reset_other(m: nn.Module, generator: torch.Generator) -> None:
    if not hasattr(m, "reset_parameters"):
        raise ProxyError(f"cannot initialise a {type(m).__name__} module for scoring (no reset_parameters)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
        m.reset_parameters()


def build_network(space, arch, generator: torch.Generator, *, init: str, device, dtype,
                  no_residual: bool = False, use_se: bool = False) -> nn.Module:
    """A freshly initialised network for one evaluation.

    ``init="gaussian"`` builds on the meta device (no default initialisation
    is run only to be overwritten) and fills every tensor from ``generator``;
    ``init="default"`` is PyTorch's default initialisation, run under a
    forked global RNG seeded from ``generator``.
    """
    if init == "gaussian":
        with torch.device("meta"):
            net = space.build(arch, no_residual=no_residual, use_se=use_se)
        net = net.to_empty(device=device)
        if dtype != torch.float32:
            net = net.to(dtype)
        _init_gaussian(net, generator)
        return net
    if init == "default":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
            net = space.build(arch, no_residual=no_residual, use_se=use_se)
        return net.to(device=device, dtype=dtype)
    raise ValueError(init)


def gaussian_input(generator: torch.Generator, batch: int, resolution: int, device, dtype) -> torch.Tensor:
    return torch.randn(batch, 3, resolution, resolution, generator=generator, device=device, dtype=dtype)


def features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature map before global pooling."""
    return net.forward_features(x)


# -- set-relative proxies ----------------------------------------------------------
class SetRelativeProxy(Proxy):
    """A proxy whose score ranks an architecture among others (AZ-NAS's rank aggregation).

    Its components are per architecture (``components(space, arch)``, the
    mean over ``repeat`` evaluations); ``aggregate(table)`` turns the
    component table of a set into one score per row, meaningful only within
    that set. ``score_set(space, archs)`` does both. A single ``score`` has
    no meaning, so it raises a ProxyError naming this; a search keeps each
    architecture's components and re-aggregates over the set it compares
    (docs/proxies.md).
    """

    component_names: ClassVar[tuple[str, ...]] = ()
    # Component name -> the registered per-architecture proxy that computes it (what a benchmark scores and caches).
    component_proxies: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def evaluate_components(self, space, arch, generator: torch.Generator) -> dict[str, float]:
        """One independent evaluation of the components (a component may be -inf: it ranks last)."""

    @abstractmethod
    def aggregate(self, table) -> list[float]:
        """One score per row of ``table`` (a sequence of component dicts), relative to that set."""

    def components(self, space, arch) -> dict[str, float]:
        """The mean components over ``repeat`` evaluations (through the active score cache, as a score)."""
        return dict(self._cached(space, arch, self._components, kind="components").parts)

    def _components(self, space, arch) -> ProxyResult:
        g = self.generator()
        rows = [self._evaluate_once(space, arch, g, self.evaluate_components)
                for _ in range(1 if self.deterministic else self.repeat)]
        for row in rows:
            for k in self.component_names:
                if math.isnan(row[k]) or row[k] == math.inf:
                    raise ProxyError(f"proxy {self.name!r}: component {k} is {row[k]}; the candidate is rejected")
        return ProxyResult(0.0, {k: sum(r[k] for r in rows) / len(rows) for k in self.component_names})

    def score_set(self, space, archs) -> list[ProxyResult]:
        table = [self.components(space, a) for a in archs]
        return [ProxyResult(v, row) for v, row in zip(self.aggregate(table), table)]

    def evaluate(self, space, arch, generator):
        raise ProxyError(f"proxy {self.name!r} ranks an architecture within a set: score a set with "
                         "score_set(space, archs), or aggregate stored components (docs/proxies.md)")
