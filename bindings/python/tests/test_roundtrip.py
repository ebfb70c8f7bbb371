"""Invertibility, log-determinants, identity at initialisation and batch-shape handling."""

import numpy as np
import pytest

import swiftflows
from swiftflows import Flow

from conftest import all_layers_spec, randomized, std_normal_logpdf

DIMS = [1, 3, 8]


def make_model(kind, dim):
    if kind == "realnvp":
        flow = swiftflows.RealNVP(dim, layers=4, hidden=(16, 16), seed=1)
    elif kind == "realnvp-lu-actnorm":
        flow = swiftflows.RealNVP(dim, layers=3, hidden=(16,), mixing="lu", actnorm=True, seed=2)
    elif kind == "nice":
        flow = swiftflows.NICE(dim, layers=4, hidden=(16, 16), seed=3)
    elif kind == "all-layers":
        flow = Flow.from_spec(all_layers_spec(dim), seed=4)
    else:
        raise AssertionError(kind)
    return randomized(flow, seed=dim)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("kind", ["realnvp", "realnvp-lu-actnorm", "nice", "all-layers"])
def test_inverse_of_forward(kind, dim, rng):
    flow = make_model(kind, dim)
    x = rng.standard_normal((64, dim)).astype(np.float32)
    z, logdet = flow.forward(x)
    assert z.dtype == np.float32 and z.shape == x.shape
    assert logdet.dtype == np.float64 and logdet.shape == (64,)
    assert np.abs(z - x).max() > 1e-3, "the randomised flow should not be the identity"
    x_back, logdet_inv = flow.inverse(z)
    np.testing.assert_allclose(x_back, x, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(logdet_inv, -logdet, rtol=1e-5, atol=1e-5)
    # And the other way round.
    z_back, logdet_fwd = flow.forward(flow.inverse(x)[0])
    np.testing.assert_allclose(z_back, x, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("kind", ["realnvp", "all-layers"])
def test_log_prob_is_base_density_plus_logdet(kind, dim, rng):
    flow = make_model(kind, dim)  # both have a standard-normal base
    x = rng.standard_normal((32, dim))
    z, logdet = flow.forward(x)
    np.testing.assert_allclose(flow.log_prob(x), std_normal_logpdf(z) + logdet, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("options", [{}, {"actnorm": True}, {"mixing": "reverse"}])
def test_new_realnvp_is_the_identity(dim, options, rng):
    flow = swiftflows.RealNVP(dim, layers=4, hidden=(16,), seed=9, **options)
    x = rng.standard_normal((100, dim)).astype(np.float32)
    z, logdet = flow.forward(x)
    if options.get("mixing") == "reverse":
        # 4 couplings with a reversal between each pair: 3 reversals, so z is x reversed.
        np.testing.assert_array_equal(z, x[:, ::-1])
    else:
        np.testing.assert_array_equal(z, x)
    np.testing.assert_array_equal(logdet, 0.0)
    np.testing.assert_allclose(flow.log_prob(x), std_normal_logpdf(x), rtol=1e-6, atol=1e-6)


def test_new_realnvp_with_lu_mixing_keeps_the_standard_normal_density(rng):
    # lu_linear starts as a random orthogonal matrix: the map is a rotation, the density unchanged.
    flow = swiftflows.RealNVP(5, layers=3, hidden=(8,), mixing="lu", seed=3)
    x = rng.standard_normal((50, 5))
    z, logdet = flow.forward(x)
    assert np.abs(z - x).max() > 1e-2
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
    np.testing.assert_allclose(flow.log_prob(x), std_normal_logpdf(x), rtol=1e-5, atol=1e-5)


def test_batch_shapes_and_single_events(rng):
    flow = make_model("all-layers", 3)
    x = rng.standard_normal((4, 5, 3))
    flat = flow.log_prob(x.reshape(20, 3))
    lp = flow.log_prob(x)
    assert lp.shape == (4, 5) and lp.dtype == np.float64
    np.testing.assert_array_equal(lp.reshape(20), flat)

    z, logdet = flow.forward(x)
    assert z.shape == (4, 5, 3) and logdet.shape == (4, 5)
    np.testing.assert_array_equal(z.reshape(20, 3), flow.forward(x.reshape(20, 3))[0])

    single = flow.log_prob(x[1, 2])
    assert isinstance(single, np.float64) and np.ndim(single) == 0
    assert single == flat[7]
    z1, ld1 = flow.forward(x[1, 2])
    assert z1.shape == (3,) and np.ndim(ld1) == 0
    np.testing.assert_array_equal(z1, z[1, 2])
    x1, ild1 = flow.inverse(z1)
    assert x1.shape == (3,) and np.ndim(ild1) == 0


def test_empty_batches():
    flow = make_model("realnvp", 3)
    for batch in [(0,), (2, 0), (0, 4)]:
        x = np.zeros(batch + (3,), dtype=np.float32)
        lp = flow.log_prob(x)
        assert lp.shape == batch and lp.dtype == np.float64
        z, ld = flow.forward(x)
        assert z.shape == batch + (3,) and ld.shape == batch
        xb, ild = flow.inverse(x)
        assert xb.shape == batch + (3,) and ild.shape == batch
    s = flow.sample(0, seed=1)
    assert s.shape == (0, 3) and s.dtype == np.float32
    s, lp = flow.sample(0, seed=1, return_log_prob=True)
    assert lp.shape == (0,)


def test_inputs_of_any_real_dtype_and_layout(rng):
    flow = make_model("all-layers", 3)
    x32 = rng.standard_normal((6, 3)).astype(np.float32)
    expected = flow.log_prob(x32)
    np.testing.assert_array_equal(flow.log_prob(x32.astype(np.float64)), expected)
    np.testing.assert_array_equal(flow.log_prob(x32.tolist()), expected)
    np.testing.assert_array_equal(flow.log_prob(np.asfortranarray(x32)), expected)
    reversed_view = x32[::-1][::-1]
    np.testing.assert_array_equal(flow.log_prob(reversed_view), expected)
    strided = np.repeat(x32, 2, axis=0)[::2]
    assert not strided.flags.c_contiguous or strided.base is not None
    np.testing.assert_array_equal(flow.log_prob(strided), expected)
    ints = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(flow.log_prob(ints), flow.log_prob(ints.astype(np.float32)))
    # float32 C-contiguous input is passed without a copy.
    assert flow._events(x32, "x")[0] is x32


def test_results_do_not_depend_on_thread_count(rng):
    flow = make_model("all-layers", 8)
    x = rng.standard_normal((3000, 8))
    before = swiftflows.get_num_threads()
    try:
        swiftflows.set_num_threads(1)
        assert swiftflows.get_num_threads() == 1
        one = flow.log_prob(x), flow.forward(x), flow.sample(3000, seed=5)
        swiftflows.set_num_threads(3)
        assert swiftflows.get_num_threads() == 3
        three = flow.log_prob(x), flow.forward(x), flow.sample(3000, seed=5)
    finally:
        swiftflows.set_num_threads(before)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1][0], three[1][0])
    np.testing.assert_array_equal(one[1][1], three[1][1])
    np.testing.assert_array_equal(one[2], three[2])
