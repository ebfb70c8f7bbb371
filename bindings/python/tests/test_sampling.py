"""Sampling: reproducibility, the (seed, i) contract, log-densities and temperature."""

import numpy as np
import pytest

import swiftflows
from swiftflows import Flow

from conftest import all_layers_spec, randomized


@pytest.fixture(scope="module")
def flow():
    return randomized(Flow.from_spec(all_layers_spec(3), seed=11), seed=5)


def test_same_seed_same_samples_and_different_seeds_differ(flow):
    a = flow.sample(200, seed=7)
    b = flow.sample(200, seed=7)
    assert a.shape == (200, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    c = flow.sample(200, seed=8)
    assert np.all(a != c)
    assert np.all(np.isfinite(a))


def test_sample_i_depends_only_on_seed_and_i(flow):
    big = flow.sample(1000, seed=2**64 - 1)
    # The base draw is bit-identical; the flow's matrix products may pick another kernel for another
    # batch size, so the transformed rows agree to float rounding (documented in swiftflows.h).
    np.testing.assert_allclose(flow.sample(10, seed=2**64 - 1), big[:10], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flow.sample(1, seed=2**64 - 1), big[:1], rtol=1e-5, atol=1e-6)


def test_seed_none_draws_a_random_seed(flow):
    assert not np.array_equal(flow.sample(16), flow.sample(16))


def test_seed_zero_is_a_valid_seed(flow):
    np.testing.assert_array_equal(flow.sample(5, seed=0), flow.sample(5, seed=np.uint64(0)))


@pytest.mark.parametrize("make", [
    lambda: randomized(swiftflows.RealNVP(4, layers=4, hidden=(16,), seed=1), seed=1),
    lambda: randomized(swiftflows.NICE(4, layers=4, hidden=(16,), seed=1), seed=2),
    lambda: randomized(Flow.from_spec(all_layers_spec(5), seed=1), seed=3),
], ids=["realnvp", "nice", "all-layers"])
def test_returned_log_prob_equals_log_prob_of_samples(make):
    flow = make()
    x, lp = flow.sample(500, seed=3, return_log_prob=True)
    assert lp.shape == (500,) and lp.dtype == np.float64
    np.testing.assert_array_equal(x, flow.sample(500, seed=3))
    np.testing.assert_allclose(lp, flow.log_prob(x), rtol=1e-4, atol=1e-5)


def test_new_realnvp_samples_a_standard_normal():
    flow = swiftflows.RealNVP(2, layers=2, hidden=(8,))
    x = flow.sample(40000, seed=1).astype(np.float64)
    assert np.all(np.abs(x.mean(axis=0)) < 0.03)
    assert np.all(np.abs(x.std(axis=0) - 1.0) < 0.03)
    assert abs(np.corrcoef(x.T)[0, 1]) < 0.03


def test_temperature_scales_the_base_samples(flow):
    # Standard-normal base: z_T = T * z_1 for the same seed, so f(x_T) = T f(x_1).
    x1 = flow.sample(300, seed=4)
    xt, lp = flow.sample(300, seed=4, temperature=0.5, return_log_prob=True)
    z1 = flow.forward(x1)[0]
    zt = flow.forward(xt)[0]
    np.testing.assert_allclose(zt, 0.5 * z1, rtol=1e-4, atol=1e-5)
    # log_prob is the model's density at temperature 1.
    np.testing.assert_allclose(lp, flow.log_prob(xt), rtol=1e-4, atol=1e-5)


def test_sample_argument_validation(flow):
    with pytest.raises(ValueError):
        flow.sample(-1, seed=1)
    with pytest.raises(TypeError):
        flow.sample(2.5, seed=1)
    with pytest.raises(TypeError):
        flow.sample("3", seed=1)
    with pytest.raises(ValueError):
        flow.sample(3, seed=-1)
    with pytest.raises(ValueError):
        flow.sample(3, seed=2**64)
    with pytest.raises(TypeError):
        flow.sample(3, seed=1.0)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_non_positive_temperature_is_refused_by_the_library(flow, temperature):
    with pytest.raises(swiftflows.SwiftFlowsError) as info:
        flow.sample(3, seed=1, temperature=temperature)
    assert info.value.status_name == "SF_ERR_INVALID_ARGUMENT"
    assert "temperature" in info.value.message.lower()
