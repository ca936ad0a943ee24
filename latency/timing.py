"""Timing statistics and the interleaved timing of whole networks, shared by every backend and caller.

A backend prepares a module as a warmed-up :class:`Timer`, whose samples are
*batch* times; :func:`timed` takes ``repeats`` samples in a row (parts are
measured this way) and returns a :class:`Measurement`.
:func:`measure_interleaved` times many modules in rounds instead, so that a
burst of load from elsewhere on a shared machine falls on all of them rather
than on one, and in passes minutes apart, of which each keeps its fastest
(whole networks are measured this way: :func:`measure_networks`).
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from hwnas.errors import BackendUnavailable


@dataclass(frozen=True)
class Measurement:
    """Batch time statistics in milliseconds over ``repeats`` timed samples."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    @property
    def spread(self) -> float:
        """Relative width of the p10-p90 band around the median."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else float("inf")

    def as_dict(self) -> dict:
        return {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "repeats": self.repeats}


def network_ms(m: Measurement) -> float:
    """The batch time a whole network is reported by: the 10th percentile of its samples (of its fastest pass,
    see :func:`fastest_pass`).

    Load from elsewhere on a shared machine only ever slows a sample down, in
    bursts of ~0.1 s of up to +70% on these 2-core machines, so a median over
    samples taken in a row follows whichever burst it met (two such medians
    of the same NB201 network agreed within ±10% for 66% of networks), while
    the 10th percentile of samples interleaved across networks
    (:func:`measure_interleaved`) reproduced within ±5% for all 400.
    """
    return m.p10_ms


def fastest_pass(passes: Sequence[Measurement]) -> Measurement:
    """The measurement of a network's fastest pass (by :func:`network_ms`).

    Interference also comes in episodes of minutes (other tenants' jobs
    contending for the shared cache and memory): one pass of 130 ImageNet
    networks agreed with another within ±10% for only 93-99% of them, up to
    19% apart, mid-sized networks most. Such an episode slows a pass down,
    never speeds it up, so the fastest of passes taken a minute or more apart
    is the network's time on the machine undisturbed; two such minima of 3
    passes each agreed within ±10% for 99% (``docs/latency.md``).
    """
    return min(passes, key=network_ms)


def summarize(samples_ms: Sequence[float]) -> Measurement:
    a = np.asarray(samples_ms, dtype=float)
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return Measurement(float(med), float(p10), float(p90), int(a.size))


# How long measurements report progress: ``on_progress(done, total, what)``, e.g. to draw a progress bar.
Progress = Callable[[int, int, str], None]


class Timer(Protocol):
    """A module prepared and warmed up on a backend, ready to be timed."""

    def sample(self) -> tuple[float, bool]:
        """One sample of the batch time in ms, and whether it is valid (False: the process was preempted)."""

    def close(self) -> None:
        """Release the session, engine or device memory."""


def take_samples(timer: Timer, k: int) -> list[float]:
    """``k`` valid samples; invalid ones are replaced, up to 4k tries (then every sample taken counts)."""
    k = max(1, int(k))
    valid, every = [], []
    while len(valid) < k and len(every) < 4 * k:
        ms, ok = timer.sample()
        every.append(ms)
        if ok:
            valid.append(ms)
    return valid if len(valid) >= min(k, max(3, k // 3)) else every


def timed(timer: Timer, repeats: int) -> Measurement:
    """``repeats`` samples of a prepared timer in a row, then close it."""
    try:
        return summarize(take_samples(timer, repeats))
    finally:
        timer.close()


def timed_sessions(prepare: Callable[[], Timer], repeats: int, sessions: int = 1) -> Measurement:
    """The fastest (:func:`fastest_pass`) of ``sessions`` timers made by ``prepare``, ``repeats / sessions``
    samples each (rounded up).

    The same module runs at different speeds in different sessions of one
    runtime (on the 2-core AMD EPYC development machine, one ImageNet
    network's session medians back to back ranged 2.68-4.26 ms, its 10th
    percentiles 2.63-3.37 ms; where its buffers land in memory, presumably), and whole networks are reported
    by the fastest of their passes, each a fresh session; a part timed in one
    session would carry that session's luck into the table.
    """
    sessions = max(1, int(sessions))
    per = max(1, math.ceil(int(repeats) / sessions))
    return fastest_pass([timed(prepare(), per) for _ in range(sessions)])


# Whole networks are timed in rounds over chunks of this many networks, repeats/ROUNDS samples per round; a round
# lasts at least ROUND_SECONDS (a pause makes up the rest), so that even a single network's samples are spread
# over a second or more instead of falling into one burst of load; and in PASSES passes over all the networks,
# each in another order, of which a network's fastest counts (fastest_pass).
ROUNDS = 5
CHUNK = 10
ROUND_SECONDS = 0.25
PASSES = 3


def pass_order(n: int, p: int) -> list[int]:
    """The order in which pass ``p`` visits ``n`` items: as given first, then shuffled (a fixed shuffle per
    pass), so that a network meets other neighbours in its chunk each pass."""
    order = list(range(n))
    if p:
        random.Random(p).shuffle(order)
    return order


def measure_interleaved(backend, items: Sequence, prepare: Callable, *, rounds: int = ROUNDS, chunk: int = CHUNK,
                        repeats: int | None = None, passes: int = PASSES,
                        on_chunk: Callable | None = None) -> list[Measurement]:
    """Measurements of many prepared modules timed in interleaved rounds, the fastest of ``passes`` passes each.

    ``prepare(item)`` gives a :class:`Timer`. Each pass goes over all items
    (in :func:`pass_order`) a chunk at a time, preparing them afresh; each
    round takes ``ceil(repeats / rounds)`` samples (``repeats``: the
    backend's by default) of every timer of the chunk in turn, so each item's
    samples are spread over the whole chunk's timing. An item's result is
    its :func:`fastest_pass`. ``on_chunk(items, measurements)`` is called
    after each chunk of each pass (for progress: ``passes × len(items)`` in all).
    """
    repeats = backend.repeats if repeats is None else int(repeats)
    per_round = max(1, math.ceil(repeats / max(1, rounds)))
    items = list(items)
    results: list[list[Measurement]] = [[] for _ in items]
    for p in range(max(1, passes)):
        order = pass_order(len(items), p)
        for start in range(0, len(order), max(1, chunk)):
            index = order[start:start + chunk]
            part = [items[i] for i in index]
            timers: list = []
            try:
                for item in part:
                    timers.append(prepare(item))
                samples: list[list[float]] = [[] for _ in timers]
                for r in range(max(1, rounds)):
                    began = time.monotonic()
                    for timer, acc in zip(timers, samples):
                        acc += take_samples(timer, per_round)
                    rest = ROUND_SECONDS - (time.monotonic() - began)
                    if rest > 0 and r < rounds - 1:
                        time.sleep(rest)
            finally:
                for timer in timers:
                    timer.close()
            done = [summarize(s) for s in samples]
            for i, m in zip(index, done):
                results[i].append(m)
            if on_chunk is not None:
                on_chunk(part, done)
    return [fastest_pass(r) for r in results]


NETWORK_TIMING = (f"10th percentile of samples taken in rounds interleaved across networks, in the fastest of "
                  f"{PASSES} passes over all of them")


class ExportedModules:
    """Modules prepared for ``backend``, each exported once (into a temporary folder, removed on :meth:`close`) and
    opened in a fresh session every time it is prepared (each pass): ``build(item)`` makes an item's module for
    inputs of ``shape(item)``; ``key(item)`` names it (the item itself by default). An ImageNet network takes 0.75 s
    to export, about as long as timing it. A backend that times torch modules (no ONNX) prepares the module afresh
    each time."""

    def __init__(self, backend, build: Callable, shape: Callable, key: Callable = lambda item: item):
        self.backend, self.build, self.shape, self.key = backend, build, shape, key
        self._tmp = tempfile.TemporaryDirectory(prefix="hwnas-modules-")
        self._files: dict = {}

    def prepare(self, item) -> Timer:
        k = self.key(item)
        path = self._files.get(k, False)
        if path is False:
            path = Path(self._tmp.name) / f"{len(self._files)}.onnx"
            try:
                self.backend.export(self.build(item), self.shape(item), path)
            except BackendUnavailable:
                path = None
            self._files[k] = path
        if path is None:
            return self.backend.prepare(self.build(item), self.shape(item))
        return self.backend.prepare_onnx(path)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "ExportedModules":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def exported_networks(space, backend) -> ExportedModules:
    """Whole networks of ``space`` for :func:`measure_networks`, each exported once."""
    shape = (3, space.resolution, space.resolution)
    return ExportedModules(backend, space.build, lambda _arch: shape)


def measure_networks(space, archs, backend, *, passes: int = PASSES, on_progress: Progress | None = None,
                     what: str = "measuring", exported: ExportedModules | None = None) -> list[Measurement]:
    """Batch-time Measurements of whole networks of ``space``, timed in rounds interleaved across them, the
    fastest of ``passes`` passes each; ``on_progress(done, passes × len(archs), what)`` follows the chunks.
    ``exported``: :func:`exported_networks` kept across calls; by default each is exported once for this call."""
    archs = list(archs)
    on_chunk = None
    if on_progress is not None:
        total, done = passes * len(archs), [0]
        on_progress(0, total, what)

        def on_chunk(items, _measurements):
            done[0] += len(items)
            on_progress(done[0], total, what)

    if exported is not None:
        return measure_interleaved(backend, archs, exported.prepare, passes=passes, on_chunk=on_chunk)
    with exported_networks(space, backend) as own:
        return measure_interleaved(backend, archs, own.prepare, passes=passes, on_chunk=on_chunk)
