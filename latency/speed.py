"""Whether this machine runs like the profiled device: a few of the profile's calibration networks timed again here.

Identity strings do not always tell CPUs apart. A virtual machine may show
only "AMD EPYC" for an EPYC without AVX-512, a Zen 4 and a Zen 5, and the
profiles made before hwnas recorded CPUID numbers cannot tell the last two
apart: on 2026-12-08 the shipped ``ort-cpu1-b1-imagenet224`` (an AVX-512 EPYC
whose recorded identity matched the host's) predicted 50 fresh networks on a
Zen 5 EPYC (CPUID family 26) 77-85 % too slow, because they ran 1.8-1.9x as
fast there.

A profile's calibration networks carry the times measured when it was made.
:func:`machine_speed` times some of them again with the profile's backend and
settings. Their median ratio, now to then, is how fast this machine runs
against the profiled device. On one device it drifts by 5-10 % an hour
(docs/latency.md). Beyond :data:`SPEED_LIMIT` either way, this machine is
another device, whatever its identity strings say.
"""

from __future__ import annotations

import numpy as np

from hwnas.errors import ProfileError
from hwnas.latency.backends import get_backend
from hwnas.latency.profile import Profile, profile_command
from hwnas.latency.timing import Progress, measure_networks, network_ms
from hwnas.models.spaces.base import get_space

# A device drifts by 5-10 % an hour and its networks seldom move more than 1.3x between runs; the Zen 5 EPYC ran
# the AVX-512 profile's networks 1.8-1.9x as fast.
SPEED_LIMIT = 1.5
SPEED_NETWORKS = 3  # timed by every command that measures on the host (a few seconds)
SPEED_WHAT = "the profile's own calibration networks measured here, against their times when it was profiled"


def anchors(profile: Profile, count: int) -> list[dict]:
    """``count`` of the profile's calibration networks with stored times, spread evenly over those times."""
    nets = sorted((n for n in profile.calibration.get("networks", []) if n.get("measured_batch_ms")),
                  key=lambda n: n["measured_batch_ms"])
    if count <= 0 or not nets:
        return []
    picks = np.unique(np.linspace(0, len(nets) - 1, min(count, len(nets))).round().astype(int))
    return [nets[i] for i in picks]


def machine_speed(profile: Profile, count: int = SPEED_NETWORKS, on_progress: Progress | None = None) -> dict | None:
    """Median ratio (this machine's batch time / the stored one) over ``count`` of the profile's calibration
    networks, with each network's ratio; None where the profile stores no timed networks."""
    nets = anchors(profile, count)
    if not nets:
        return None
    space = get_space(profile.space)
    backend = get_backend(profile.backend, **profile.settings)
    measured = measure_networks(space, [space.parse(n["arch"]) for n in nets], backend, on_progress=on_progress,
                                what="timing the profile's own calibration networks")
    ratios = [network_ms(m) / n["measured_batch_ms"] for m, n in zip(measured, nets)]
    return {"networks": len(nets), "ratio": float(np.median(ratios)), "ratios": [float(r) for r in ratios],
            "what": SPEED_WHAT}


def check_speed(profile: Profile, count: int = SPEED_NETWORKS, doing: str = "measured",
                on_progress: Progress | None = None) -> dict | None:
    """:func:`machine_speed`, refused in one line (ProfileError) when this machine runs the networks more than
    :data:`SPEED_LIMIT` times faster or slower than the profiled device."""
    speed = machine_speed(profile, count, on_progress)
    if speed is not None and not 1 / SPEED_LIMIT <= speed["ratio"] <= SPEED_LIMIT:
        pace = (f"{1 / speed['ratio']:.2f}x as fast as" if speed["ratio"] < 1
                else f"{speed['ratio']:.2f}x as slow as")
        raise ProfileError(
            f"profile {profile.name} does not fit: this machine runs {speed['networks']} of its calibration networks "
            f"{pace} the profiled device did, so it is another device although their recorded identities match, "
            f"and networks cannot be {doing} here for it (to measure on this machine, profile it: "
            f"{profile_command(profile.metadata)}, and pass that folder as --profile)")
    return speed
