"""SwiftFlows: normalizing flows from a Swift engine (libswiftflows.so), through ctypes.

    >>> import swiftflows
    >>> flow = swiftflows.RealNVP(2, layers=8)
    >>> x = flow.sample(1000, seed=1)
    >>> flow.log_prob(x).shape
    (1000,)
"""

from ._version import __version__
from ._native import get_num_threads, library_path, library_version, set_num_threads
from .errors import SwiftFlowsError
from .flow import Flow
from .presets import NICE, RealNVP

__all__ = ["Flow", "RealNVP", "NICE", "SwiftFlowsError", "set_num_threads", "get_num_threads",
           "library_version", "library_path", "__version__"]
