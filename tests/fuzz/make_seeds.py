"""Writes the seed models of the loader fuzzer: one small valid model of every layer type and preset,
an initialised ActNorm, a training checkpoint, and models written by h5py alone (no SwiftFlows),
in HDF5's oldest and newest file formats and with chunked, compressed datasets; and the hostile
models of issue 25 ("hostile-*.h5", each refused with a status): values in other files (external
storage, a virtual dataset, an external link), layers that declare gigabytes, a `cnf` layer whose
solver never finishes, a singular 1x1 convolution and out-of-range log-scales.

    python tests/fuzz/make_seeds.py OUTDIR [--hostile-only]

The files are small (a few kB each) so that mutations hit structure rather than weights.
"""

import io
import os
import sys

import h5py
import numpy as np

import swiftflows
from swiftflows import Flow, datasets
from swiftflows.integrity import reseal_bytes

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


def edited(data, edit):
    """A model image after `edit(h5py_file)`, with a fresh checksum (as a hostile writer would)."""
    buf = io.BytesIO(data)
    with h5py.File(buf, "r+") as f:
        edit(f)
    return reseal_bytes(buf.getvalue())


def replace_dataset(name, **create):
    """An edit that replaces dataset `name` by one made with `create_dataset(**create)`."""
    def edit(f):
        shape, dtype = f[name].shape, f[name].dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, **create)
    return edit


def write_hostile_models(out):
    """The hostile models of issue 25; relative file names point into `out` (the fuzz corpus)."""
    small = Flow.from_spec(SPECS["realnvp"], seed=3).to_bytes()
    with open(os.path.join(out, "hostile-source.bin"), "wb") as fh:
        fh.write(b"root:x:0:0:root:/root:/bin/bash\n" * 8)
    source = os.path.join(out, "hostile-source.h5")
    with h5py.File(source, "w") as f:
        f.create_dataset("w", data=np.arange(4, dtype=np.float32))

    def virtual(f):
        layout = h5py.VirtualLayout(shape=(2,), dtype=np.float32)
        layout[...] = h5py.VirtualSource("hostile-source.h5", "w", shape=(2,))
        del f["layers/0000/bias_1"]
        f.create_virtual_dataset("layers/0000/bias_1", layout)

    def external_link(f):
        del f["layers/0000/bias_1"]
        f["layers/0000/bias_1"] = h5py.ExternalLink("hostile-source.h5", "/w")

    def attrs(path, **values):
        def edit(f):
            for key, value in values.items():
                f[path].attrs[key] = value
        return edit

    cnf = Flow.from_spec({"event_shape": [2], "layers": [{"type": "cnf", "hidden": [4]}]}, seed=3).to_bytes()
    conv = Flow.from_spec({"event_shape": [2, 2, 2], "layers": [{"type": "invertible_conv1x1", "lu": False}]},
                          seed=3).to_bytes()
    diagonal = Flow.from_spec({"event_shape": [2], "base": {"type": "diagonal_normal"}, "layers": []},
                              seed=3).to_bytes()
    lu = Flow.from_spec({"event_shape": [3], "layers": [{"type": "lu_linear"}]}, seed=3).to_bytes()
    models = {
        "external-storage": edited(small, replace_dataset("layers/0000/bias_1",
                                                          external=[("hostile-source.bin", 0, 8)])),
        "external-storage-dev": edited(small, replace_dataset("layers/0000/bias_1", external=[("/dev/zero", 0, 8)])),
        "virtual-dataset": edited(small, virtual),
        "external-link": edited(small, external_link),
        "huge-layer": edited(small, attrs("layers/0000", hidden=np.array([16384, 16000], np.int64))),
        "huge-layers": edited(small, attrs("layers/0001", hidden=np.array([8192, 8192, 8192], np.int64))),
        "huge-event": edited(small, lambda f: f.attrs.__setitem__("event_shape", np.array([1 << 24], np.int64))),
        "solver-steps": edited(cnf, attrs("layers/0000", solver="euler", step_size=1e-9, max_steps=np.int64(10**9))),
        "solver-step-size": edited(cnf, attrs("layers/0000", solver="euler", step_size=1e-9,
                                              max_steps=np.int64(100000))),
        "singular-conv": edited(conv, lambda f: f["layers/0000/weight"].__setitem__(Ellipsis, 0)),
        "base-log-scale": edited(diagonal, lambda f: f["base/log_scale"].__setitem__(Ellipsis, 1e30)),
        "lu-log-scale": edited(lu, lambda f: f["layers/0000/log_scale"].__setitem__(Ellipsis, [100, -100, 0])),
        "lu-condition": edited(lu, lambda f: f["layers/0000/log_scale"].__setitem__(Ellipsis, [30, -30, 0])),
    }
    for name, data in models.items():
        with open(os.path.join(out, "hostile-%s.h5" % name), "wb") as fh:
            fh.write(data)
        try:
            Flow.from_bytes(data).close()
        except swiftflows.SwiftFlowsError:
            continue
        raise SystemExit("make_seeds: hostile-%s.h5 loads" % name)


def main(out, hostile_only=False):
    os.makedirs(out, exist_ok=True)
    write_hostile_models(out)
    if hostile_only:
        print("hostile models written to", out)
        return
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
    arguments = [a for a in sys.argv[1:] if a != "--hostile-only"]
    main(arguments[0] if arguments else os.path.join(os.path.dirname(__file__), "corpus"),
         hostile_only="--hostile-only" in sys.argv[1:])
