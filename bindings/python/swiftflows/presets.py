"""Named architectures (expanded by the library, see docs/model-format.md "Architecture spec")."""

import operator

from .flow import Flow

__all__ = ["RealNVP", "NICE", "NSF"]


def _int(value, name):
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError("%s must be an integer, got %s" % (name, type(value).__name__)) from None


def _hidden(hidden):
    if isinstance(hidden, (str, bytes)):
        raise TypeError("hidden must be a sequence of integers")
    try:
        widths = list(hidden)
    except TypeError:
        widths = [hidden]
    return [_int(w, "hidden width") for w in widths]


def RealNVP(dim, layers=8, hidden=(64, 64), activation="relu", clamp=5.0, actnorm=False,
            mixing="alternate", seed=0):
    """RealNVP (Dinh et al. 2017) for ``dim``-dimensional vectors: ``layers`` affine couplings
    with half masks, conditioner MLPs of widths ``hidden``, log-scale soft clamp ``clamp`` (0 =
    none), optional ActNorm before each coupling, and ``mixing`` between couplings:
    ``"alternate"`` (flip the mask), ``"reverse"`` / ``"random"`` (permutations) or ``"lu"``
    (LU-decomposed linear layers). A new model is the identity map."""
    spec = {
        "preset": "realnvp",
        "dim": _int(dim, "dim"),
        "layers": _int(layers, "layers"),
        "hidden": _hidden(hidden),
        "activation": str(activation),
        "clamp": float(clamp),
        "actnorm": bool(actnorm),
        "mixing": str(mixing),
    }
    return Flow.from_spec(spec, seed=seed)


def NICE(dim, layers=4, hidden=(64, 64), activation="relu", mixing="alternate", seed=0):
    """NICE (Dinh et al. 2015) for ``dim``-dimensional vectors: ``layers`` additive couplings
    and a diagonal-normal base (NICE's scaling layer)."""
    spec = {
        "preset": "nice",
        "dim": _int(dim, "dim"),
        "layers": _int(layers, "layers"),
        "hidden": _hidden(hidden),
        "activation": str(activation),
        "mixing": str(mixing),
    }
    return Flow.from_spec(spec, seed=seed)


def NSF(dim, layers=8, hidden=(64, 64), bins=8, bound=3.0, activation="relu", actnorm=False,
        mixing="alternate", seed=0):
    """Neural spline flow (Durkan et al. 2019) for ``dim``-dimensional vectors: ``layers``
    monotonic rational-quadratic spline couplings with ``bins`` bins on ``[-bound, bound]``
    (identity with unit slope outside), conditioner MLPs of widths ``hidden``, optional ActNorm
    and ``mixing`` as in :func:`RealNVP`. A new model is the identity map."""
    spec = {
        "preset": "nsf",
        "dim": _int(dim, "dim"),
        "layers": _int(layers, "layers"),
        "hidden": _hidden(hidden),
        "bins": _int(bins, "bins"),
        "bound": float(bound),
        "activation": str(activation),
        "actnorm": bool(actnorm),
        "mixing": str(mixing),
    }
    return Flow.from_spec(spec, seed=seed)
