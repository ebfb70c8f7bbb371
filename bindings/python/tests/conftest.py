"""Shared helpers for the swiftflows test suite."""

import io
import math

import numpy as np
import pytest

import swiftflows

h5py = pytest.importorskip("h5py")

LOG_2PI = math.log(2.0 * math.pi)


def expect_status(status_name, fn, *fragments):
    """Runs fn, which must raise SwiftFlowsError with status `status_name` and a message holding
    every fragment; returns the error."""
    with pytest.raises(swiftflows.SwiftFlowsError) as info:
        fn()
    err = info.value
    assert err.status_name == status_name, str(err)
    for fragment in fragments:
        assert fragment in err.message, (fragment, err.message)
    return err


def std_normal_logpdf(x):
    """log N(x; 0, I) in float64, summed over the last axis."""
    x = np.asarray(x, dtype=np.float64)
    return -0.5 * np.sum(x * x, axis=-1) - 0.5 * x.shape[-1] * LOG_2PI


def all_layers_spec(dim):
    """A spec using every layer type (valid for dim >= 1)."""
    return {
        "event_shape": [dim],
        "base": {"type": "standard_normal"},
        "layers": [
            # At D = 1 the alternating mask conditions on the only feature (invalid): invert it.
            {"type": "affine_coupling", "mask": "alternating", "invert_mask": dim == 1,
             "hidden": [16, 16], "activation": "tanh", "clamp": 3.0},
            {"type": "permutation", "kind": "random"},
            {"type": "actnorm"},
            {"type": "lu_linear"},
            {"type": "additive_coupling", "mask": "half", "hidden": [16], "activation": "elu"},
            {"type": "affine_coupling", "mask": "half", "invert_mask": dim > 1, "hidden": [8],
             "activation": "silu", "clamp": 0},
        ],
    }


def perturb_image(data, seed, scale=0.3):
    """Returns a copy of an HDF5 model image with every floating-point dataset replaced by
    random values (uniform in [-scale, scale]); structure and integer datasets unchanged."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO(data)
    with h5py.File(buf, "r+") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
                obj[...] = rng.uniform(-scale, scale, size=obj.shape).astype(obj.dtype)
        f.visititems(visit)
    return swiftflows.integrity.reseal_bytes(buf.getvalue())


def randomized(flow, seed=0, scale=0.3):
    """The same architecture with random (non-identity) parameters."""
    return swiftflows.Flow.from_bytes(perturb_image(flow.to_bytes(), seed, scale))


def datasets(data):
    """{path: numpy array} of every dataset in an HDF5 image."""
    out = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
