"""Writes the seed models of the loader fuzzer: one small valid model of every layer type and preset,
an initialised ActNorm, a training checkpoint, and models written by h5py alone (no SwiftFlows),
in HDF5's oldest and newest file formats and with chunked, compressed datasets.

    python tests/fuzz/make_seeds.py OUTDIR

The files are small (a few kB each) so that mutations hit structure rather than weights.
"""

import os
import sys

import h5py
import numpy as np

import swiftflows
from swiftflows import Flow, datasets

SPECS = {
    "realnvp": {"preset": "realnvp", "dim": 2, "layers": 2, "hidden": [4]},
    "nice": {"preset": "nice", "dim": 4, "layers": 2, "hidden": [4]},
    "nsf": {"preset": "nsf", "dim": 3, "layers": 1, "hidden": [4], "bins": 3},
    "maf": {"preset": "maf", "dim": 3, "layers": 2, "hidden": [4]},
    "autoregressive": {"event_shape": [4], "layers": [
        {"type": "affine_autoregressive", "order": "random", "hidden": [5, 3], "direction": "iaf"},
        {"type": "spline_autoregressive", "hidden": [4], "bins": 3, "activation": "tanh"},
        {"type": "affine_autoregressive", "hidden": [4], "residual_blocks": 2, "scale": "sigmoid"},
    ]},
    "residual_made_context": {"event_shape": [3], "context": {"size": 2}, "layers": [
        {"type": "spline_autoregressive", "hidden": [5], "residual_blocks": 1, "bins": 3, "direction": "iaf"},
    ]},
    "conditional_base": {"event_shape": [2], "context": {"size": 2, "embedding": {"hidden": [3], "features": 2}},
                         "base": {"type": "conditional_diagonal_normal", "hidden": [3], "activation": "tanh"},
                         "layers": [{"type": "affine_coupling", "hidden": [3]}]},
    "glow": {"preset": "glow", "shape": [1, 4, 4], "levels": 2, "steps": 1, "hidden": 2},
    "realnvp_image": {"preset": "realnvp_image", "shape": [1, 4, 4], "levels": 1, "couplings": 1, "hidden": 2},
    "cnf": {"event_shape": [2], "layers": [{"type": "cnf", "hidden": [4], "solver": "rk4", "step_size": 0.25}]},
    "cnf_hutchinson": {"event_shape": [2], "layers": [{"type": "cnf", "hidden": [3], "trace": "hutchinson",
                                                       "rtol": 1e-3, "atol": 1e-3}]},
    "cnf_context": {"event_shape": [2], "context": {"size": 2, "embedding": {"hidden": [3], "features": 2}},
                    "layers": [{"type": "cnf", "hidden": [3], "solver": "rk4", "step_size": 0.25}]},
    "every_vector_layer": {
        "event_shape": [4], "base": {"type": "diagonal_normal"},
        "layers": [
            {"type": "actnorm"},
            {"type": "lu_linear"},
            {"type": "permutation", "kind": "random"},
            {"type": "affine_coupling", "mask": "alternating", "hidden": [3], "activation": "elu"},
            {"type": "additive_coupling", "hidden": [], "activation": "tanh"},
            {"type": "spline_coupling", "hidden": [3], "bins": 2, "bound": 2},
            {"type": "scale", "scale": 0.5, "shift": 0.1},
        ]},
    "image_layers": {
        "event_shape": [2, 4, 4],
        "layers": [
            {"type": "dequantize", "levels": 4},
            {"type": "logit", "alpha": 0.05},
            {"type": "invertible_conv1x1", "lu": False},
            {"type": "conv_affine_coupling", "mask": "checkerboard", "hidden": 2},
            {"type": "squeeze"},
            {"type": "split", "prior": "standard", "layers": [{"type": "invertible_conv1x1", "lu": True}]},
        ]},
}


def write_h5py_model(path, libver, chunked):
    """A RealNVP-style model (ActNorm, affine coupling, permutation) written with h5py only."""
    rng = np.random.default_rng(5)
    kwargs = {"chunks": True, "compression": "gzip", "shuffle": True} if chunked else {}
    with h5py.File(path, "w", libver=libver) as f:
        f.attrs["format"] = "swiftflows-model"
        f.attrs["format_version"] = np.array([1, 0], dtype=np.int64)
        f.attrs["event_shape"] = np.array([3], dtype=np.int64)
        base = f.create_group("base")
        base.attrs["type"] = "diagonal_normal"
        base.create_dataset("loc", data=rng.normal(size=3).astype(np.float32), **kwargs)
        base.create_dataset("log_scale", data=rng.normal(size=3).astype(np.float32) * 0.1, **kwargs)
        layers = f.create_group("layers")
        layers.attrs["count"] = np.int64(3)
        g = layers.create_group("0000")
        g.attrs["type"] = "actnorm"
        g.attrs["initialized"] = np.int64(1)
        g.create_dataset("bias", data=rng.normal(size=3).astype(np.float32), **kwargs)
        g.create_dataset("log_scale", data=rng.normal(size=3).astype(np.float32) * 0.1, **kwargs)
        g = layers.create_group("0001")
        g.attrs["type"] = "affine_coupling"
        g.create_dataset("mask", data=np.array([1, 0, 1], dtype=np.int64), **kwargs)
        g.attrs["hidden"] = np.array([4], dtype=np.int64)
        g.attrs["activation"] = "relu"
        g.attrs["clamp"] = np.float64(2.0)
        g.create_dataset("weight_0", data=rng.normal(size=(4, 2)).astype(np.float32), **kwargs)
        g.create_dataset("bias_0", data=rng.normal(size=4).astype(np.float32), **kwargs)
        g.create_dataset("weight_1", data=rng.normal(size=(2, 4)).astype(np.float32) * 0.1, **kwargs)
        g.create_dataset("bias_1", data=rng.normal(size=2).astype(np.float32) * 0.1, **kwargs)
        g = layers.create_group("0002")
        g.attrs["type"] = "permutation"
        g.create_dataset("indices", data=np.array([2, 0, 1], dtype=np.int64), **kwargs)


def main(out):
    os.makedirs(out, exist_ok=True)
    for name, spec in SPECS.items():
        Flow.from_spec(spec, seed=3).save(os.path.join(out, "seed-%s.h5" % name))
    # An ActNorm flow initialised from data (initialized = 1) and trained one epoch.
    x = datasets.toy("8gaussians", 256, seed=1)
    flow = Flow.from_spec({"preset": "realnvp", "dim": 2, "layers": 2, "hidden": [4], "actnorm": True}, seed=4)
    flow.fit(x, epochs=1, batch_size=64, lr=1e-2, validation=0.0, progress=False)
    flow.save(os.path.join(out, "seed-actnorm-initialised.h5"))
    # A checkpoint (model + /training group) of a run on the points the harness resumes with.
    ckpt = os.path.join(out, "seed-checkpoint.h5")
    flow = Flow.from_spec({"preset": "realnvp", "dim": 2, "layers": 1, "hidden": [4]}, seed=5)
    flow.fit(x, epochs=1, batch_size=64, lr=1e-2, validation=0.25, seed=1, progress=False, checkpoint=ckpt)
    # Files written by h5py without SwiftFlows.
    write_h5py_model(os.path.join(out, "seed-h5py-earliest.h5"), "earliest", chunked=False)
    write_h5py_model(os.path.join(out, "seed-h5py-latest.h5"), "latest", chunked=False)
    write_h5py_model(os.path.join(out, "seed-h5py-chunked-gzip.h5"), "earliest", chunked=True)
    for name in sorted(os.listdir(out)):
        if name.startswith("seed-"):
            Flow.load(os.path.join(out, name)).close()  # every seed must load
    print("seeds written to", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus"))
