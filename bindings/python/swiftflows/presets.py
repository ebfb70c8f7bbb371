"""Named architectures (expanded by the library, see docs/model-format.md "Architecture spec").

The keyword defaults below are written out for readable signatures; the library owns them
(``sf_preset_defaults``, :func:`swiftflows._native.preset_defaults`), and
tests/test_library_tables.py checks that every one equals the library's."""

import operator

from .flow import Flow

__all__ = ["RealNVP", "NICE", "NSF", "MAF", "IAF", "Glow", "RealNVPImage"]


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
            mixing="alternate", context=0, base="standard_normal", seed=0):
    """RealNVP (Dinh et al. 2017) for ``dim``-dimensional vectors: ``layers`` affine couplings
    with half masks, conditioner MLPs of widths ``hidden``, log-scale soft clamp ``clamp`` (0 =
    none), optional ActNorm before each coupling, and ``mixing`` between couplings:
    ``"alternate"`` (flip the mask), ``"reverse"`` / ``"random"`` (permutations) or ``"lu"``
    (LU-decomposed linear layers). ``context``: the context size of a conditional flow
    ``p(x | c)`` whose conditioners also read ``c`` (0: unconditional), or a context object
    (standardisation and embedding, docs/model-format.md). ``base``: the base distribution, a type
    name (``"standard_normal"``, ``"diagonal_normal"``, or for a conditional flow
    ``"conditional_diagonal_normal"``, whose mean and log-scale are functions of the encoded
    context) or a base object such as ``{"type": "conditional_diagonal_normal", "hidden": [32]}``.
    A new model is the identity map with a standard-normal base (at every context)."""
    return _affine("realnvp", dim, layers, hidden, activation, clamp, actnorm, mixing, context, base, seed)


def NICE(dim, layers=4, hidden=(64, 64), activation="relu", mixing="alternate", context=0, base="diagonal_normal",
         seed=0):
    """NICE (Dinh et al. 2015) for ``dim``-dimensional vectors: ``layers`` additive couplings
    and a diagonal-normal base (NICE's scaling layer; ``base`` as in :func:`RealNVP`)."""
    spec = {
        "preset": "nice",
        "dim": _int(dim, "dim"),
        "layers": _int(layers, "layers"),
        "hidden": _hidden(hidden),
        "activation": str(activation),
        "mixing": str(mixing),
        "context": _context(context),
        "base": _base(base),
    }
    return Flow.from_spec(spec, seed=seed)


def NSF(dim, layers=8, hidden=(64, 64), bins=8, bound=3.0, activation="relu", actnorm=False,
        mixing="alternate", autoregressive=False, context=0, base="standard_normal", seed=0, *, residual_blocks=0):
    """Neural spline flow (Durkan et al. 2019) for ``dim``-dimensional vectors: ``layers``
    monotonic rational-quadratic spline couplings with ``bins`` bins on ``[-bound, bound]``
    (identity with unit slope outside), conditioner MLPs of widths ``hidden``, optional ActNorm
    and ``mixing`` as in :func:`RealNVP`. With ``autoregressive=True``, autoregressive splines
    driven by MADE networks of widths ``hidden`` instead of couplings (zuko's NSF); ``mixing`` and
    ``residual_blocks`` as in :func:`MAF`. ``context`` and ``base`` as in :func:`RealNVP`. A new
    model is the identity map."""
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
        "autoregressive": bool(autoregressive),
        "residual_blocks": _int(residual_blocks, "residual_blocks"),
        "context": _context(context),
        "base": _base(base),
    }
    return Flow.from_spec(spec, seed=seed)


def _affine(preset, dim, layers, hidden, activation, clamp, actnorm, mixing, context, base, seed, residual_blocks=None):
    """The affine presets (realnvp, maf, iaf) share their options; the autoregressive ones also
    take ``residual_blocks``."""
    spec = {
        "preset": preset,
        "dim": _int(dim, "dim"),
        "layers": _int(layers, "layers"),
        "hidden": _hidden(hidden),
        "activation": str(activation),
        "clamp": float(clamp),
        "actnorm": bool(actnorm),
        "mixing": str(mixing),
        "context": _context(context),
        "base": _base(base),
    }
    if residual_blocks is not None:
        spec["residual_blocks"] = _int(residual_blocks, "residual_blocks")
    return Flow.from_spec(spec, seed=seed)


def MAF(dim, layers=5, hidden=(64, 64), activation="relu", clamp=5.0, actnorm=False, mixing="alternate", context=0,
        base="standard_normal", seed=0, *, residual_blocks=0):
    """Masked autoregressive flow (Papamakarios et al. 2017) for ``dim``-dimensional vectors:
    ``layers`` affine autoregressive layers whose MADE networks have widths ``hidden``, log-scale
    soft clamp ``clamp`` (0 = none), optional ActNorm before each layer. ``mixing``:
    ``"alternate"`` (the layers' orders alternate between natural and reversed), ``"reverse"`` /
    ``"random"`` (a permutation between layers) or ``"lu"`` (LU linear layers). The density takes
    one network pass per layer, sampling ``dim`` passes. ``context``: the context size of a
    conditional flow ``p(x | c)`` (0: unconditional), or a context object (standardisation and
    embedding, docs/model-format.md); ``base`` as in :func:`RealNVP`. ``residual_blocks``: with
    N >= 1, every MADE is nflows' residual MADE (``use_residual_blocks=True``) with N residual
    blocks of width ``hidden[0]`` (every width in ``hidden`` must then be equal; the default
    ``(64, 64)`` gives width 64). A new model is the identity map."""
    return _affine("maf", dim, layers, hidden, activation, clamp, actnorm, mixing, context, base, seed, residual_blocks)


def IAF(dim, layers=5, hidden=(64, 64), activation="relu", clamp=5.0, actnorm=False, mixing="alternate", context=0,
        base="standard_normal", seed=0, *, residual_blocks=0):
    """Inverse autoregressive flow (Kingma et al. 2016) for ``dim``-dimensional vectors: the
    layers of :func:`MAF` in the other direction, so sampling takes one network pass per layer
    and the density ``dim`` passes; ``residual_blocks`` as in :func:`MAF`. A new model is the
    identity map."""
    return _affine("iaf", dim, layers, hidden, activation, clamp, actnorm, mixing, context, base, seed, residual_blocks)


def _context(context):
    """A preset's ``context`` option: a context size (int >= 0) or a context object (dict)."""
    if isinstance(context, dict):
        return context
    return _int(context, "context")


def _base(base):
    """A preset's ``base`` option: a base type name (str) or a base object (dict)."""
    if isinstance(base, dict):
        return base
    if not isinstance(base, str):
        raise TypeError("base must be a base type name or a base object (dict), got %s" % type(base).__name__)
    return base


def _shape(shape):
    dims = [_int(v, "shape entry") for v in shape]
    if len(dims) != 3:
        raise ValueError("shape must be [C, H, W], got %r" % (shape,))
    return dims


def Glow(shape, levels=3, steps=8, hidden=64, bits=8, data_levels=None, prior="conditional", clamp=2.0,
         preprocess="scale", alpha=None, seed=0):
    """Glow (Kingma & Dhariwal 2018) for images of ``shape`` ``[C, H, W]``: ``levels`` levels of a
    squeeze and ``steps`` × (ActNorm, LU 1×1 convolution, affine coupling with a conv network of
    ``hidden`` channels), with a multi-scale split and learned conditional prior between levels.
    Inputs are integer levels (``bits``-bit data, or ``data_levels`` levels); training adds uniform
    dequantisation noise. H and W must be divisible by ``2**levels``. ``preprocess`` maps the
    dequantised values in [0, 1) to the flow's input: ``"scale"`` to [-0.5, 0.5) as Glow does, or
    ``"logit"`` with margin ``alpha`` (default 1e-6) as RealNVP does."""
    spec = {"preset": "glow", "shape": _shape(shape), "levels": _int(levels, "levels"), "steps": _int(steps, "steps"),
            "hidden": _int(hidden, "hidden"), "bits": _int(bits, "bits"), "prior": str(prior), "clamp": float(clamp),
            "preprocess": str(preprocess)}
    if alpha is not None:
        spec["alpha"] = float(alpha)
    if data_levels is not None:
        spec["data_levels"] = _int(data_levels, "data_levels")
    return Flow.from_spec(spec, seed=seed)


def RealNVPImage(shape, levels=2, couplings=3, hidden=64, bits=8, data_levels=None, alpha=0.05, actnorm=True,
                 clamp=5.0, seed=0):
    """RealNVP's multi-scale image flow (Dinh et al. 2017): dequantisation and logit
    preprocessing, checkerboard and channel-wise affine couplings with conv networks, squeezes and
    factor-out splits. Inputs are integer levels as for :func:`Glow`."""
    spec = {"preset": "realnvp_image", "shape": _shape(shape), "levels": _int(levels, "levels"),
            "couplings": _int(couplings, "couplings"), "hidden": _int(hidden, "hidden"), "bits": _int(bits, "bits"),
            "alpha": float(alpha), "actnorm": bool(actnorm), "clamp": float(clamp)}
    if data_levels is not None:
        spec["data_levels"] = _int(data_levels, "data_levels")
    return Flow.from_spec(spec, seed=seed)
