"""Conditional flows p(x | c) and the autoregressive presets through the Python package."""

import numpy as np
import pytest

import swiftflows
from swiftflows import Flow, TrainingCancelled, datasets

from conftest import expect_status, h5py


def test_conditional_toy_data_is_reproducible_and_documented():
    x, c, h = datasets.conditional_toy("checkerboard-scaled", 1000, seed=3)
    assert x.shape == (1000, 2) and c.shape == (1000, 1) and x.dtype == np.float32
    assert abs(h - np.log(32.0)) < 1e-12
    assert np.all(np.abs(c) <= 0.5)
    x2, c2, _ = datasets.conditional_toy("checkerboard-scaled", 1000, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(c, c2)
    xr, cr, hr = datasets.conditional_toy("8gaussians-rotated", 500, seed=1)
    assert hr == 2.831 and np.all((cr >= 0) & (cr < 2 * np.pi))
    # Rotating back by the context gives the 8gaussians points of the same seed.
    base = datasets.toy("8gaussians", 500, seed=1).astype(np.float64)
    angle = -cr[:, 0].astype(np.float64)
    back = np.stack([np.cos(angle) * xr[:, 0] - np.sin(angle) * xr[:, 1],
                     np.sin(angle) * xr[:, 0] + np.cos(angle) * xr[:, 1]], axis=1)
    np.testing.assert_allclose(back, base, atol=1e-5)
    assert set(datasets.CONDITIONAL_TOY_NAMES) == {"8gaussians-rotated", "checkerboard-scaled"}
    expect_status("SF_ERR_INVALID_ARGUMENT", lambda: datasets.conditional_toy("rings", 10), "checkerboard-scaled")


@pytest.fixture(scope="module")
def trained():
    x, c, _ = datasets.conditional_toy("checkerboard-scaled", 8000, seed=1)
    flow = swiftflows.MAF(2, layers=3, hidden=(32, 32), context=1, seed=2)
    before = -flow.log_prob(x[:1000], context=c[:1000]).mean()
    history = flow.fit(x, context=c, epochs=3, batch_size=256, lr=3e-3, validation=0.1, progress=False)
    return flow, x, c, before, history


def test_fit_with_context_lowers_the_nll_and_uses_the_context(trained):
    flow, x, c, before, history = trained
    assert flow.context_size == 1
    after = -flow.log_prob(x[:1000], context=c[:1000]).mean()
    assert after < before - 0.3, (before, after)
    assert history[-1].validation_nll is not None
    # log p(x | c) depends on c: the scaled checkerboard's density moves with the scale.
    point = np.array([0.5, 0.5], np.float32)
    assert flow.log_prob(point, context=[-0.4]) != flow.log_prob(point, context=[0.4])


def test_context_shapes_broadcast_and_sampling_modes(trained):
    flow = trained[0]
    x = np.zeros((6, 2), np.float32)
    one = flow.log_prob(x, context=[0.1])
    rows = flow.log_prob(x, context=np.full((6, 1), 0.1, np.float32))
    np.testing.assert_array_equal(one, rows)
    z, ld = flow.forward(x, context=[0.1])
    back, ldi = flow.inverse(z, context=[0.1])
    np.testing.assert_allclose(back, x, atol=1e-5)
    np.testing.assert_allclose(ld, -ldi, rtol=1e-5, atol=1e-5)
    per_row = flow.sample(8, seed=4, context=np.repeat(np.array([[-0.3], [0.2]], np.float32), 4, axis=0))
    blocks = flow.sample(8, seed=4, context=np.array([[-0.3], [0.2]], np.float32))
    np.testing.assert_array_equal(per_row, blocks)
    s, lp = flow.sample(5, seed=1, context=[0.2], return_log_prob=True)
    np.testing.assert_allclose(lp, flow.log_prob(s, context=[0.2]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="conditional"):
        flow.log_prob(x)
    with pytest.raises(ValueError, match="conditional"):
        flow.sample(3, seed=1)
    with pytest.raises(ValueError, match="shape"):
        flow.log_prob(x, context=np.zeros((6, 2), np.float32))
    with pytest.raises(ValueError, match="divide"):
        flow.sample(5, seed=1, context=np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="unconditional"):
        swiftflows.RealNVP(2, layers=1, hidden=(4,)).log_prob(x, context=[0.0])


def test_conditional_files_round_trip_and_h5py_reads_the_context(trained, tmp_path):
    flow, x, c = trained[0], trained[1][:200], trained[2][:200]
    path = tmp_path / "maf.h5"
    flow.save(path)
    loaded = Flow.load(path)
    assert loaded.context_size == 1
    np.testing.assert_array_equal(loaded.log_prob(x, context=c), flow.log_prob(x, context=c))
    with h5py.File(path, "r") as f:
        assert list(f.attrs["format_version"]) == [1, 1]
        assert f["context"].attrs["size"] == 1
        assert f["layers/0000"].attrs["type"] == "affine_autoregressive"
        assert f["layers/0000"].attrs["context_features"] == 1
        assert f["layers/0000/order"].shape == (2,)


def test_conditional_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    x, c, _ = datasets.conditional_toy("8gaussians-rotated", 3000, seed=5)
    options = dict(epochs=3, batch_size=256, lr=2e-3, seed=7, validation=0.2)
    full = swiftflows.RealNVP(2, layers=2, hidden=(16,), context=1, seed=3)
    full.fit(x, context=c, checkpoint=tmp_path / "full.h5", progress=False, **options)
    cut = swiftflows.RealNVP(2, layers=2, hidden=(16,), context=1, seed=3)
    path = tmp_path / "cut.h5"

    def stop(event):
        return event["kind"] == "epoch" and event["epoch"] == 2

    with pytest.raises(TrainingCancelled):
        cut.fit(x, context=c, checkpoint=path, progress=stop, **options)
    resumed, history = Flow.resume(path, x, context=c, progress=False)
    assert len(history) == 3
    np.testing.assert_array_equal(resumed.log_prob(x[:50], context=c[:50]), full.log_prob(x[:50], context=c[:50]))
    expect_status("SF_ERR_INVALID_ARGUMENT", lambda: Flow.resume(path, x, context=c + 1, progress=False), "other data")
    expect_status("SF_ERR_INVALID_ARGUMENT", lambda: Flow.resume(path, x, progress=False), "context")


@pytest.mark.parametrize("residual_blocks", [0, 2])
@pytest.mark.parametrize("builder", [swiftflows.MAF, swiftflows.IAF,
                                     lambda d, **k: swiftflows.NSF(d, autoregressive=True, **k)])
def test_autoregressive_presets_are_the_identity_at_init_and_invert(builder, residual_blocks):
    flow = builder(3, layers=2, hidden=(8,), seed=1, residual_blocks=residual_blocks)
    assert all(layer.get("residual_blocks", 0) == residual_blocks for layer in flow.spec["layers"])
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    z, ld = flow.forward(x)
    np.testing.assert_array_equal(z, x)
    np.testing.assert_array_equal(ld, np.zeros(20))
    flow.fit(x, epochs=2, batch_size=10, lr=1e-2, validation=0, progress=False)
    z, ld = flow.forward(x)
    back, ldi = flow.inverse(z)
    np.testing.assert_allclose(back, x, atol=1e-4)
    np.testing.assert_allclose(ld, -ldi, rtol=1e-4, atol=1e-4)


def test_conditional_cnf_through_the_library_and_its_files(tmp_path):
    """A cnf layer reads the (embedded) context in its dynamics: forward and inverse invert each
    other at a context, the density and samples depend on it, training with a context lowers the
    NLL, and the file (context_features, weight_0 over [z, e]) round-trips exactly."""
    spec = {"event_shape": [2], "context": {"size": 2, "embedding": {"hidden": [4], "features": 3}},
            "layers": [{"type": "cnf", "hidden": [8], "rtol": 1e-5, "atol": 1e-5}]}
    flow = Flow.from_spec(spec, seed=1)
    assert flow.context_size == 2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2)).astype(np.float32)
    c = rng.normal(size=(30, 2)).astype(np.float32)
    z, ld = flow.forward(x, context=c)
    back, ldi = flow.inverse(z, context=c)
    np.testing.assert_allclose(back, x, atol=1e-3)
    np.testing.assert_allclose(ld, -ldi, atol=1e-3)
    assert np.abs(flow.log_prob(x, context=c) - flow.log_prob(x, context=c + 1)).max() > 1e-3
    s, lp = flow.sample(5, seed=1, context=[0.2, -0.1], return_log_prob=True)
    np.testing.assert_allclose(lp, flow.log_prob(s, context=[0.2, -0.1]), atol=1e-3)

    # p(x | c) = N(c, I): the context explains most of x.
    cs = 2 * rng.normal(size=(1000, 2)).astype(np.float32)
    xs = (cs + rng.normal(size=(1000, 2))).astype(np.float32)
    before = -flow.log_prob(xs, context=cs).mean()
    flow.fit(xs, context=cs, epochs=3, batch_size=100, lr=3e-2, validation=0, progress=False)
    after = -flow.log_prob(xs, context=cs).mean()
    assert after < before - 1, (before, after)

    path = tmp_path / "cnf.h5"
    flow.save(path)
    loaded = Flow.load(path)
    np.testing.assert_array_equal(loaded.log_prob(xs[:100], context=cs[:100]), flow.log_prob(xs[:100], context=cs[:100]))
    with h5py.File(path, "r") as f:
        layer = f["layers/0000"]
        assert layer.attrs["type"] == "cnf"
        assert layer.attrs["context_features"] == 3
        assert layer["weight_0"].shape == (8, 2 + 3)
    unconditional = Flow.from_spec({"event_shape": [2], "layers": [{"type": "cnf", "hidden": [4]}]}, seed=1)
    unconditional.save(tmp_path / "plain.h5")
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert "context_features" not in f["layers/0000"].attrs


def test_residual_made_presets_train_save_and_load_with_a_context(tmp_path):
    """nflows' residual MADE (residual_blocks) through the Python presets: conditional training,
    a bit-exact save/load, the documented datasets, and refusals with clear messages."""
    x, c, _ = datasets.conditional_toy("8gaussians-rotated", 2000, seed=3)
    flow = swiftflows.MAF(2, layers=2, hidden=(16, 16), context=1, seed=4, residual_blocks=2)
    assert [layer["hidden"] for layer in flow.spec["layers"]] == [[16], [16]]
    history = flow.fit(x, context=c, epochs=3, batch_size=200, lr=3e-3, validation=0, progress=False)
    assert np.isfinite(history[-1].train_nll) and history[-1].train_nll < history[0].train_nll
    path = tmp_path / "residual.h5"
    flow.save(path)
    loaded = Flow.load(path)
    np.testing.assert_array_equal(loaded.log_prob(x[:100], context=c[:100]), flow.log_prob(x[:100], context=c[:100]))
    np.testing.assert_array_equal(loaded.sample(50, seed=2, context=c[:50]), flow.sample(50, seed=2, context=c[:50]))
    with h5py.File(path, "r") as f:
        g = f["layers/0000"]
        assert g.attrs["residual_blocks"] == 2 and list(g.attrs["hidden"]) == [16]
        assert g["initial_weight"].shape == (16, 2) and g["context_weight"].shape == (16, 1)
        assert g["block_1_context_weight"].shape == (16, 1)
        assert g["final_weight"].shape == (4, 16) and "weight_0" not in g
    expect_status("SF_ERR_SPEC", lambda: swiftflows.MAF(2, hidden=(16, 8), residual_blocks=1), "equal hidden widths")
    expect_status("SF_ERR_SPEC", lambda: swiftflows.NSF(2, residual_blocks=1), "autoregressive")
