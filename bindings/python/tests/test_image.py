"""Image flows from Python: presets, training on integer levels, files, sampling with temperature."""

import numpy as np
import pytest

import swiftflows


def levels(n, seed=0, shape=(1, 8, 8), top=256):
    return np.random.default_rng(seed).integers(0, top, size=(n,) + shape).astype(np.float32)


def test_glow_preset_shapes_and_identity_free_start():
    flow = swiftflows.Glow((1, 8, 8), levels=2, steps=2, hidden=8)
    assert flow.event_shape == (1, 8, 8)
    types = [layer["type"] for layer in flow.spec["layers"]]
    assert types[:3] == ["dequantize", "scale", "squeeze"]
    assert types[-1] == "split"
    with pytest.raises(swiftflows.SwiftFlowsError, match="divisible"):
        swiftflows.Glow((1, 6, 6), levels=2)
    logit = swiftflows.Glow((1, 8, 8), levels=2, steps=2, hidden=8, preprocess="logit", alpha=1e-4)
    assert logit.spec["layers"][1] == {"type": "logit", "alpha": 1e-4}


def test_glow_trains_saves_and_samples(tmp_path):
    x = levels(256)
    flow = swiftflows.Glow((1, 8, 8), levels=2, steps=2, hidden=8, seed=1)
    history = flow.fit(x, epochs=3, batch_size=64, lr=3e-3, validation=0.0, progress=False)
    assert history[-1].train_nll < history[0].train_nll
    path = tmp_path / "glow.h5"
    flow.save(path)
    loaded = swiftflows.Flow.load(path)
    np.testing.assert_array_equal(loaded.log_prob(x[:10] + 0.5), flow.log_prob(x[:10] + 0.5))
    # Nested split levels and the ActNorm state survive the file.
    assert loaded.spec == flow.spec
    cold = loaded.sample(16, seed=3, temperature=0.5)
    hot = loaded.sample(16, seed=3, temperature=1.0)
    assert cold.shape == (16, 1, 8, 8) and np.all(np.isfinite(hot))
    # Lower temperature: less spread around the model's centre.
    assert cold.std() < hot.std()


def test_realnvp_image_with_17_levels():
    x = levels(128, top=17)
    flow = swiftflows.RealNVPImage((1, 8, 8), levels=2, couplings=1, hidden=8, data_levels=17, seed=2)
    assert flow.spec["layers"][0] == {"type": "dequantize", "levels": 17}
    history = flow.fit(x, epochs=2, batch_size=32, lr=1e-3, validation=0.25, progress=False)
    assert all(h.validation_nll is not None for h in history)
    z, logdet = flow.forward(x[:4] + 0.5)
    back, inv = flow.inverse(z)
    np.testing.assert_allclose(back, x[:4] + 0.5, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(logdet, -inv, rtol=1e-5, atol=1e-3)
