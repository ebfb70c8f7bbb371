"""SwiftFlows: normalizing flows from a Swift engine (libswiftflows.so), through ctypes.

    >>> import swiftflows
    >>> flow = swiftflows.RealNVP(2, layers=8)
    >>> x = flow.sample(1000, seed=1)
    >>> flow.log_prob(x).shape
    (1000,)

Training and toy data:

    >>> data = swiftflows.datasets.toy("8gaussians", 20000, seed=0)
    >>> history = flow.fit(data, epochs=10, progress=False)
    >>> history[-1].validation_nll  # doctest: +SKIP
    3.09
"""

from ._version import __version__
from ._native import (get_memory_limit, get_num_threads, library_path, library_version, set_memory_limit,
                      set_num_threads)
from .errors import SwiftFlowsError
from .flow import Flow
from .presets import IAF, MAF, NICE, NSF, Glow, RealNVP, RealNVPImage
from .training import EpochReport, TextProgressBar, TqdmProgressBar, TrainingCancelled
from .integrity import reseal
from . import datasets, integrity, training

__all__ = ["Flow", "RealNVP", "NICE", "NSF", "MAF", "IAF", "Glow", "RealNVPImage", "SwiftFlowsError", "TrainingCancelled", "EpochReport", "TextProgressBar",
           "TqdmProgressBar", "datasets", "integrity", "reseal", "training", "set_num_threads", "get_num_threads",
           "set_memory_limit", "get_memory_limit", "library_version",
           "library_path", "__version__"]
