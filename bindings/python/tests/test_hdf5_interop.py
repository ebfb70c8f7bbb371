"""Model files written by the library, read and edited with h5py (docs/model-format.md)."""

import json

import numpy as np
import pytest

import swiftflows
from swiftflows import Flow

from conftest import std_normal_logpdf

h5py = pytest.importorskip("h5py")


def test_saved_model_has_the_documented_layout(tmp_path):
    flow = swiftflows.RealNVP(2, layers=2, hidden=(64, 32), seed=3)
    path = tmp_path / "model.h5"
    flow.save(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "swiftflows-model"
        assert isinstance(f.attrs["format"], str)
        assert list(f.attrs["format_version"]) == [1, 1]
        assert f.attrs["format_version"].dtype == np.int64
        assert list(f.attrs["event_shape"]) == [2]
        assert isinstance(f.attrs["library_version"], str)
        assert f.attrs["library_version"] == swiftflows.library_version()
        assert json.loads(f.attrs["spec"]) == flow.spec

        assert f["base"].attrs["type"] == "standard_normal"
        layers = f["layers"]
        assert int(layers.attrs["count"]) == 2
        assert sorted(layers.keys()) == ["0000", "0001"]
        for name, mask in [("0000", [1, 0]), ("0001", [0, 1])]:
            g = layers[name]
            assert g.attrs["type"] == "affine_coupling"
            assert isinstance(g.attrs["activation"], str) and g.attrs["activation"] == "relu"
            assert float(g.attrs["clamp"]) == 5.0
            assert list(g.attrs["hidden"]) == [64, 32]
            assert g["mask"].dtype == np.int64 and list(g["mask"][()]) == mask
            shapes = {"weight_0": (64, 1), "bias_0": (64,), "weight_1": (32, 64), "bias_1": (32,),
                      "weight_2": (2, 32), "bias_2": (2,)}
            for dataset, shape in shapes.items():
                assert g[dataset].shape == shape, (name, dataset)
                assert g[dataset].dtype == np.float32, (name, dataset)
            # A new coupling is the identity: zero last layer; hidden layers U(-1/sqrt(fan_in), ..).
            assert not g["weight_2"][()].any() and not g["bias_2"][()].any()
            assert 0 < np.abs(g["weight_1"][()]).max() <= 1 / np.sqrt(64)
        total = sum(ds.size for g in layers.values() for k, ds in g.items() if ds.dtype == np.float32)
        assert total == flow.num_parameters


def _mlp(h, g, hidden_count):
    """The documented conditioner (ReLU) in float64, weights from an h5py group."""
    for l in range(hidden_count + 1):
        h = h @ g["weight_%d" % l][()].astype(np.float64).T + g["bias_%d" % l][()]
        if l < hidden_count:
            h = np.maximum(h, 0.0)
    return h


def test_editing_parameters_with_h5py_changes_log_prob_as_predicted(tmp_path, rng):
    flow = swiftflows.RealNVP(2, layers=2, hidden=(16, 16), clamp=5.0, seed=8)
    path = tmp_path / "model.h5"
    flow.save(path)
    x = rng.standard_normal((50, 2))
    np.testing.assert_allclose(flow.log_prob(x), std_normal_logpdf(x), rtol=1e-6)

    with h5py.File(path, "r+") as f:
        f["layers/0000/bias_2"][...] = np.array([0.4, 0.9], dtype=np.float32)  # (t, s_hat)
        f["layers/0001/weight_2"][...] = rng.uniform(-0.5, 0.5, size=(2, 16)).astype(np.float32)
        f["layers/0001/bias_2"][...] = np.array([-0.3, 0.2], dtype=np.float32)
    swiftflows.reseal(path)  # after a deliberate edit (docs/model-format.md, "File checksum")
    edited = Flow.load(path)

    # numpy prediction, float64.
    with h5py.File(path, "r") as f:
        # Layer 0: mask [1, 0]: the conditioner output is its last bias (weights are zero).
        z = x.copy()
        s0 = 5.0 * np.tanh(0.9 / 5.0)
        z[:, 1] = x[:, 1] * np.exp(s0) + 0.4
        # Layer 1: mask [0, 1]: conditioned on feature 1, transforms feature 0.
        h = _mlp(z[:, 1:2], f["layers/0001"], 2)
        s1 = 5.0 * np.tanh(h[:, 1] / 5.0)
        z[:, 0] = z[:, 0] * np.exp(s1) + h[:, 0]
        logdet = s0 + s1
    expected = std_normal_logpdf(z) + logdet
    got = edited.log_prob(x)
    assert np.abs(got - flow.log_prob(x)).max() > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(edited.forward(x)[0], z, rtol=1e-5, atol=1e-5)


def test_reader_accepts_documented_alternative_types(tmp_path, rng):
    """Fixed-length strings, other integer/float widths, float64 parameters, unknown extras,
    a newer minor version: all accepted (docs/model-format.md, Conventions and Readers)."""
    flow = swiftflows.NICE(3, layers=2, hidden=(8,), seed=1)
    path = tmp_path / "model.h5"
    flow.save(path)
    with h5py.File(path, "r+") as f:
        f["base/loc"][...] = rng.uniform(-1, 1, 3).astype(np.float32)
        f["base/log_scale"][...] = rng.uniform(-1, 1, 3).astype(np.float32)
        w = f["layers/0001/weight_1"]
        w[...] = rng.uniform(-1, 1, w.shape).astype(np.float32)
    swiftflows.reseal(path)
    reference = Flow.load(path)
    x = rng.standard_normal((20, 3))
    expected = reference.log_prob(x)

    with h5py.File(path, "r+") as f:
        f.attrs["format"] = np.bytes_(b"swiftflows-model")           # fixed-length ASCII
        f.attrs["format_version"] = np.array([1, 7], dtype=np.int32)  # newer minor, int32
        f.attrs["event_shape"] = np.array([3], dtype=np.int16)
        f.attrs["something_new"] = "ignored"
        f["layers"].attrs["count"] = np.int32(2)
        f["layers/0000"].attrs["type"] = np.bytes_(b"additive_coupling")
        f["layers/0000"].create_dataset("future_dataset", data=np.zeros(4))
        loc = f["base/loc"][()]
        del f["base/loc"]
        f["base"].create_dataset("loc", data=loc.astype(np.float64))  # float64 parameter
        mask = f["layers/0001/mask"][()]
        del f["layers/0001/mask"]
        f["layers/0001"].create_dataset("mask", data=mask.astype(np.int32))
    swiftflows.reseal(path)
    np.testing.assert_allclose(Flow.load(path).log_prob(x), expected, rtol=1e-12)


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_extra_attributes_of_every_type_class_pass_the_structure_check(tmp_path, rng, libver):
    """The loader validates every attribute message before HDF5 decodes it
    (docs/model-format.md, "File checksum and pre-checks"): valid attributes of each datatype
    class h5py writes — in both file formats, on the root, a group and a dataset — must pass."""
    flow = swiftflows.RealNVP(3, layers=2, hidden=(8,), seed=2)
    x = rng.standard_normal((10, 3))
    expected = flow.log_prob(x)
    path = tmp_path / "model.h5"
    with h5py.File(path, "w", libver=libver, track_order=(libver == "latest")) as f:
        with h5py.File(_saved(flow, tmp_path), "r") as src:
            for key, value in src.attrs.items():
                f.attrs[key] = value
            for name in src:
                src.copy(name, f)
        extras = {
            "u8": np.uint8(7), "f16": np.float16(1.5), "f64s": np.linspace(0, 1, 5),
            "fixed": np.bytes_(b"abc"), "vlen_list": np.array(["a", "bb", "ccc"], dtype=h5py.string_dtype()),
            "utf8": "λ = 1", "empty": h5py.Empty("f4"), "bool": np.bool_(True),
            "compound": np.array([(1, 2.5, b"xy")], dtype=[("a", "<i4"), ("b", "<f8"), ("c", "S2")]),
            "array": np.zeros(1, dtype=np.dtype((np.float32, (2, 3)))),
            "vlen_ints": np.array([np.arange(3), np.arange(5)], dtype=h5py.vlen_dtype(np.int32)),
            "opaque": np.void(b"\x01\x02\x03\x04"),
            "enum": np.array([0, 1], dtype=h5py.enum_dtype({"RED": 0, "GREEN": 1}, basetype="i1")),
            "ref": f.ref, "matrix": rng.standard_normal((4, 6)),
        }
        for key, value in extras.items():
            for target in (f, f["layers"], f["layers/0000/weight_0"]):
                target.attrs["x_" + key] = value
    loaded = Flow.load(path)
    np.testing.assert_allclose(loaded.log_prob(x), expected, rtol=1e-12)


def _saved(flow, tmp_path):
    path = tmp_path / "orig.h5"
    flow.save(path)
    return path
