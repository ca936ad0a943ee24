"""latency: what a network costs on a device (measure · decompose · predict).

The public API: load a :class:`Profile`, predict with a :class:`Predictor`, and fit a calibration
(:func:`fit_calibration`) on measured networks' :class:`Features`.
"""

from hwnas.latency.calibration import Features, fit_calibration
from hwnas.latency.predictor import Predictor
from hwnas.latency.profile import Profile

__all__ = ["Features", "Predictor", "Profile", "fit_calibration"]
