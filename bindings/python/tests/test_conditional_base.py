"""The conditional base distribution ("conditional_diagonal_normal": a diagonal normal whose mean
and log-scale are functions of the encoded context) through the Python package: presets and
specs, identity at initialisation, a fit of a known conditional, sampling, files (read back with
h5py and evaluated with numpy) and refusals."""

import math

import numpy as np
import pytest

import swiftflows
from swiftflows import Flow

from conftest import expect_status, h5py, std_normal_logpdf

LOG_2PI = math.log(2.0 * math.pi)
A, B, S = np.array([1.5, -0.7]), np.array([0.3, 1.0]), np.array([0.5, -0.4])


def linear_gaussian(n, seed):
    """x | c ~ N(A c + B, diag exp(S c)^2), c ~ U(-1, 1); returns x, c and the true mean NLL."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, size=(n, 1))
    log_scale = S * c
    x = A * c + B + np.exp(log_scale) * rng.standard_normal((n, 2))
    x32, c32 = x.astype(np.float32), c.astype(np.float32)
    u = (x32 - A * c32 - B) / np.exp(S * c32)
    nll = np.mean(np.sum(0.5 * u * u + S * c32 + 0.5 * LOG_2PI, axis=1))
    return x32, c32, float(nll)


@pytest.mark.parametrize("builder", [swiftflows.MAF, swiftflows.IAF, swiftflows.RealNVP, swiftflows.NSF])
def test_presets_take_the_conditional_base_and_start_standard_normal(builder):
    flow = builder(3, layers=2, hidden=(8,), context=2, base="conditional_diagonal_normal", seed=1)
    assert flow.spec["base"] == {"type": "conditional_diagonal_normal", "hidden": [], "activation": "relu"}
    assert flow.context_size == 2
    x = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    c = np.random.default_rng(1).standard_normal((50, 2)).astype(np.float32)
    np.testing.assert_allclose(flow.log_prob(x, context=c), std_normal_logpdf(x), rtol=1e-5, atol=1e-5)


def test_the_base_object_form_and_the_base_network_parameters():
    flow = swiftflows.MAF(2, layers=1, hidden=(4,), context=3,
                          base={"type": "conditional_diagonal_normal", "hidden": [5], "activation": "tanh"})
    plain = swiftflows.MAF(2, layers=1, hidden=(4,), context=3)
    # The base network 3 -> 5 -> 4 adds 3*5 + 5 + 5*4 + 4 parameters.
    assert flow.num_parameters - plain.num_parameters == 3 * 5 + 5 + 5 * 4 + 4
    assert flow.spec["base"]["hidden"] == [5]
    assert swiftflows.NICE(2, layers=1).spec["base"] == {"type": "diagonal_normal"}


def test_a_conditional_base_alone_fits_a_linear_gaussian_conditional():
    x, c, _ = linear_gaussian(4000, seed=1)
    xt, ct, true_nll = linear_gaussian(4000, seed=2)
    flow = Flow.from_spec({"event_shape": [2], "context": {"size": 1}, "base": "conditional_diagonal_normal"}, seed=3)
    flow.fit(x, context=c, epochs=10, batch_size=128, lr=0.05, schedule="cosine", min_lr_factor=0.01,
             validation=0, progress=False)
    nll = -flow.log_prob(xt, context=ct).mean()
    assert abs(nll - true_nll) < 0.03, (nll, true_nll)
    # Sampling: the reported log-densities are those log_prob gives, and the spread follows the
    # context (log-scale S * c).
    s, lp = flow.sample(4000, seed=5, context=[0.8], return_log_prob=True)
    np.testing.assert_allclose(lp, flow.log_prob(s, context=[0.8]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.mean(axis=0), A * 0.8 + B, atol=0.15)
    np.testing.assert_allclose(np.log(s.std(axis=0)), S * 0.8, atol=0.1)


def test_files_round_trip_and_numpy_evaluates_the_stored_base(tmp_path):
    flow = Flow.from_spec({"event_shape": [3], "context": {"size": 2, "mean": [0.5, -1.0], "scale": [2.0, 0.5]},
                           "base": {"type": "conditional_diagonal_normal", "hidden": [4], "activation": "tanh"},
                           "layers": [{"type": "permutation", "kind": "reverse"}]}, seed=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    c = rng.standard_normal((40, 2)).astype(np.float32)
    # Train a little so that the base's last layer is not zero.
    flow.fit(x, context=c, epochs=3, batch_size=8, lr=0.05, validation=0, progress=False)
    path = tmp_path / "conditional_base.h5"
    flow.save(path)
    loaded = Flow.load(path)
    assert loaded.spec == flow.spec
    np.testing.assert_array_equal(loaded.log_prob(x, context=c), flow.log_prob(x, context=c))
    with h5py.File(path, "r") as f:
        base = f["base"]
        assert base.attrs["type"] == "conditional_diagonal_normal"
        assert list(base.attrs["hidden"]) == [4] and base.attrs["activation"] == "tanh"
        w0, b0, w1, b1 = (base[k][()].astype(np.float64) for k in ("weight_0", "bias_0", "weight_1", "bias_1"))
        mean, scale = f["context/mean"][()], f["context/scale"][()]
    assert w0.shape == (4, 2) and w1.shape == (6, 4) and np.any(w1 != 0)
    e = (c.astype(np.float64) - mean) / scale
    theta = np.tanh(e @ w0.T + b0) @ w1.T + b1
    loc, log_scale = theta[:, :3], theta[:, 3:]
    z = x.astype(np.float64)[:, ::-1]
    u = (z - loc) / np.exp(log_scale)
    expected = np.sum(-0.5 * u * u - log_scale, axis=1) - 1.5 * LOG_2PI
    np.testing.assert_allclose(flow.log_prob(x, context=c), expected, rtol=1e-5, atol=1e-5)


def test_refusals():
    expect_status("SF_ERR_SPEC", lambda: swiftflows.MAF(2, base="conditional_diagonal_normal"),
                  "conditional_diagonal_normal", "context")
    expect_status("SF_ERR_UNKNOWN_TYPE", lambda: swiftflows.RealNVP(2, base="cauchy"), "cauchy")
    expect_status("SF_ERR_SPEC",
                  lambda: Flow.from_spec({"event_shape": [2], "context": {"size": 1},
                                          "base": {"type": "conditional_diagonal_normal", "width": 3}}),
                  "unknown key")
    with pytest.raises(TypeError, match="base"):
        swiftflows.NSF(2, base=3)
    flow = swiftflows.IAF(2, layers=1, hidden=(4,), context=1, base="conditional_diagonal_normal")
    with pytest.raises(ValueError, match="conditional"):
        flow.log_prob(np.zeros((2, 2), np.float32))
