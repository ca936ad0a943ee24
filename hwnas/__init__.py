"""hwnas: hardware-aware, latency-constrained neural architecture search.

The code lives in three packages: ``hwnas.models`` (what a network is),
``hwnas.latency`` (what it costs on a device) and ``hwnas.search`` (how one is
chosen). This package only holds the error types and the command line.
"""

__version__ = "0.1.0"
