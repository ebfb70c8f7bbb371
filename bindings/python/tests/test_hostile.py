"""Hostile files and careless callers (issue 25): model files that reach outside themselves,
allocation bombs, special files, unbounded ODE work, models that cannot be inverted, training
steps that overflow, and the Flow object's close/__init__ contract.

Cases that could hang or abort the interpreter before the fixes run in a subprocess with a
timeout (and, for memory, an address-space cap), so a regression fails the test instead of the
suite.
"""

import io
import math
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import swiftflows
from swiftflows import flow as flow_module
from swiftflows.integrity import reseal_bytes

from conftest import expect_status, h5py

LIMIT_MESSAGE = "memory limit"


def run_isolated(code, timeout=120, address_space=None, env=None):
    """Runs `code` in a fresh interpreter (optionally under RLIMIT_AS = `address_space` bytes);
    returns (returncode, stdout, stderr). A hang is a failure (TimeoutExpired)."""
    prologue = ""
    if address_space is not None:
        prologue = "import resource\nresource.setrlimit(resource.RLIMIT_AS, (%d, resource.RLIM_INFINITY))\n" % address_space
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    return proc.returncode, proc.stdout, proc.stderr


def small_model_bytes(seed=1):
    return swiftflows.RealNVP(2, layers=2, hidden=(4,), seed=seed).to_bytes()


def edited(data, edit):
    """`data` (an HDF5 image) after `edit(h5py_file)`, with a fresh checksum (as a hostile writer would)."""
    buf = io.BytesIO(data)
    with h5py.File(buf, "r+") as f:
        edit(f)
    return reseal_bytes(buf.getvalue())


# ---- 1. storage that reaches outside the file ------------------------------------------------

TARGET = "layers/0000/bias_1"


def with_external_storage(data, source, offset=0):
    def edit(f):
        shape, dtype = f[TARGET].shape, f[TARGET].dtype
        del f[TARGET]
        f.create_dataset(TARGET, shape=shape, dtype=dtype,
                         external=[(os.fspath(source), offset, int(np.prod(shape)) * dtype.itemsize)])
    return edited(data, edit)


def with_virtual_dataset(data, source_file):
    def edit(f):
        shape, dtype = f[TARGET].shape, f[TARGET].dtype
        del f[TARGET]
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[...] = h5py.VirtualSource(os.fspath(source_file), "w", shape=shape)
        f.create_virtual_dataset(TARGET, layout)
    return edited(data, edit)


def with_external_link(data, source_file):
    def edit(f):
        del f[TARGET]
        f[TARGET] = h5py.ExternalLink(os.fspath(source_file), "/w")
    return edited(data, edit)


def load_both_ways(data, path):
    """Loads `data` from memory and from a file; returns the two SwiftFlowsErrors."""
    path.write_bytes(data)
    errors = []
    for load in (lambda: swiftflows.Flow.from_bytes(data), lambda: swiftflows.Flow.load(path)):
        with pytest.raises(swiftflows.SwiftFlowsError) as info:
            load()
        errors.append(info.value)
    return errors


def test_external_storage_is_refused_naming_the_dataset(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 4)
    for err in load_both_ways(with_external_storage(small_model_bytes(), secret), tmp_path / "ext.h5"):
        assert err.status_name == "SF_ERR_FORMAT", str(err)
        assert "/layers/0000/bias_1" in err.message and "external storage" in err.message, err.message


def test_virtual_datasets_are_refused_naming_the_dataset(tmp_path):
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as g:
        g.create_dataset("w", data=np.arange(2, dtype=np.float32))
    for err in load_both_ways(with_virtual_dataset(small_model_bytes(), source), tmp_path / "vds.h5"):
        assert err.status_name == "SF_ERR_FORMAT", str(err)
        assert "/layers/0000/bias_1" in err.message and "virtual dataset" in err.message, err.message


def test_external_links_are_refused_naming_the_link(tmp_path):
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as g:
        g.create_dataset("w", data=np.arange(2, dtype=np.float32))
    for err in load_both_ways(with_external_link(small_model_bytes(), source), tmp_path / "link.h5"):
        assert err.status_name == "SF_ERR_FORMAT", str(err)
        assert "/layers/0000/bias_1" in err.message and "external link" in err.message, err.message


def test_files_written_by_h5py_alone_with_external_storage_are_refused(tmp_path):
    """Without a SwiftFlows checksum block (h5py wrote the whole file), in both HDF5 formats."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(64))
    data = small_model_bytes()
    for libver in ("earliest", "latest"):
        out = tmp_path / ("h5py-%s.h5" % libver)
        with h5py.File(io.BytesIO(data), "r") as src, h5py.File(out, "w", libver=libver) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            src.copy("base", dst)
            src.copy("layers", dst)
            shape, dtype = dst[TARGET].shape, dst[TARGET].dtype
            del dst[TARGET]
            dst.create_dataset(TARGET, shape=shape, dtype=dtype, external=[(os.fspath(secret), 0, 8)])
        err = expect_status("SF_ERR_FORMAT", lambda: swiftflows.Flow.load(out), "external storage")
        assert "bias_1" in err.message, (libver, err.message)


def test_external_storage_pointing_at_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = with_external_storage(small_model_bytes(), fifo)
    (tmp_path / "fifo-ext.h5").write_bytes(data)
    code = """
        import swiftflows
        for load in (lambda: swiftflows.Flow.load(%r), lambda: swiftflows.Flow.from_bytes(open(%r, "rb").read())):
            try:
                load()
                print("loaded")
            except swiftflows.SwiftFlowsError as e:
                print(e.status_name)
    """ % (str(tmp_path / "fifo-ext.h5"), str(tmp_path / "fifo-ext.h5"))
    rc, out, err = run_isolated(code, timeout=60)
    assert rc == 0, err
    assert out.split() == ["SF_ERR_FORMAT", "SF_ERR_FORMAT"], out


def test_checkpoints_with_external_storage_are_refused(tmp_path):
    flow = swiftflows.RealNVP(2, layers=2, hidden=(4,), seed=3)
    x = np.random.default_rng(0).normal(size=(256, 2)).astype(np.float32)
    checkpoint = tmp_path / "checkpoint.h5"
    flow.fit(x, epochs=1, batch_size=64, checkpoint=checkpoint, progress=False)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(64))

    def edit(f):
        name = "training/optimizer/first_0000"
        shape, dtype = f[name].shape, f[name].dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, external=[(os.fspath(secret), 0, 8 * int(np.prod(shape)))])
    hostile = tmp_path / "hostile-checkpoint.h5"
    hostile.write_bytes(edited(checkpoint.read_bytes(), edit))
    expect_status("SF_ERR_FORMAT", lambda: swiftflows.Flow.load(hostile), "/training/optimizer/first_0000",
                  "external storage")
    expect_status("SF_ERR_FORMAT", lambda: swiftflows.Flow.resume(hostile, x, progress=False), "external storage")


# ---- 2. memory ----------------------------------------------------------------------------------

BOMB_SPEC = '{"preset":"realnvp","dim":16777216,"layers":2,"hidden":[8]}'


def test_a_small_spec_that_needs_gigabytes_fails_with_a_status_under_a_memory_cap():
    code = """
        import swiftflows, sys, time
        t = time.time()
        for limit in (None, 64 << 30):
            if limit:
                swiftflows.set_memory_limit(limit)
            try:
                swiftflows.Flow(%r)
                print("created")
            except swiftflows.SwiftFlowsError as e:
                print(e.status_name, round(time.time() - t))
                print(e.message, file=sys.stderr)
    """ % BOMB_SPEC
    rc, out, err = run_isolated(code, address_space=3 << 30)
    assert rc == 0, "the interpreter died (%d): %s" % (rc, err[-2000:])
    lines = out.split("\n")
    assert lines[0].startswith("SF_ERR_LIMIT"), (out, err)
    assert int(lines[0].split()[1]) < 10, "refused before allocating: %s" % out
    assert lines[1].startswith("SF_ERR_MEMORY"), (out, err)


def huge_layer_file(tmp_path, hidden):
    """A model file of a few kilobytes whose first coupling layer declares `hidden` widths."""
    data = edited(small_model_bytes(), lambda f: f["layers/0000"].attrs.__setitem__("hidden", np.array(hidden, np.int64)))
    path = tmp_path / "huge.h5"
    path.write_bytes(data)
    return path


def test_a_small_file_declaring_huge_layers_fails_with_a_status_under_a_memory_cap(tmp_path):
    path = huge_layer_file(tmp_path, [16384, 16000])  # just under 2^28 parameters in one layer
    assert path.stat().st_size < 64 << 10
    code = """
        import swiftflows, sys
        for limit in (None, 64 << 30):
            if limit:
                swiftflows.set_memory_limit(limit)
            try:
                swiftflows.Flow.load(%r)
                print("loaded")
            except swiftflows.SwiftFlowsError as e:
                print(e.status_name)
                print(e.message, file=sys.stderr)
    """ % str(path)
    rc, out, err = run_isolated(code, address_space=3 << 30)
    assert rc == 0, "the interpreter died (%d): %s" % (rc, err[-2000:])
    assert out.split() == ["SF_ERR_LIMIT", "SF_ERR_MEMORY"], (out, err)


def test_the_memory_limit_is_settable_and_documented():
    default = swiftflows.get_memory_limit()
    assert default == swiftflows._native.DEFAULT_MEMORY_LIMIT == 2 << 30
    try:
        swiftflows.set_memory_limit(1 << 20)
        expect_status("SF_ERR_LIMIT", lambda: swiftflows.RealNVP(64, layers=4, hidden=(512, 512)), LIMIT_MESSAGE)
        expect_status("SF_ERR_INVALID_ARGUMENT", lambda: swiftflows.set_memory_limit(1000))
        assert swiftflows.get_memory_limit() == 1 << 20
    finally:
        swiftflows.set_memory_limit(default)
    swiftflows.RealNVP(64, layers=4, hidden=(512, 512))


def test_the_memory_limit_comes_from_the_environment():
    rc, out, err = run_isolated("import swiftflows; print(swiftflows.get_memory_limit())",
                                env={"SWIFTFLOWS_MEMORY_LIMIT": str(3 << 20)})
    assert rc == 0, err
    assert int(out) == 3 << 20


def test_a_large_file_that_is_not_hdf5_is_refused_without_being_read(tmp_path):
    path = tmp_path / "zeros.h5"
    with open(path, "wb") as f:
        f.truncate(4 << 30)  # sparse
    code = """
        import swiftflows, time
        t = time.time()
        try:
            swiftflows.Flow.load(%r)
        except swiftflows.SwiftFlowsError as e:
            print(e.status_name, round(time.time() - t, 1))
    """ % str(path)
    rc, out, err = run_isolated(code, address_space=1 << 30)
    assert rc == 0, err
    status, seconds = out.split()
    assert status == "SF_ERR_FORMAT" and float(seconds) < 5, out


# ---- 3. hangs -------------------------------------------------------------------------------------

def test_special_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.h5"
    os.mkfifo(fifo)
    code = """
        import swiftflows
        for path in (%r, "/dev/zero", %r):
            try:
                swiftflows.Flow.load(path)
            except swiftflows.SwiftFlowsError as e:
                print(e.status_name)
    """ % (str(fifo), str(tmp_path))
    rc, out, err = run_isolated(code, timeout=30)
    assert rc == 0, err
    assert out.split() == ["SF_ERR_IO"] * 3, out


def cnf_file(**attributes):
    flow = swiftflows.Flow({"event_shape": [2], "layers": [{"type": "cnf", "hidden": [8]}]}, seed=1)

    def edit(f):
        for key, value in attributes.items():
            f["layers/0000"].attrs[key] = value
    return edited(flow.to_bytes(), edit)


def test_cnf_solver_limits_hold_for_files_and_specs():
    # The file: Euler steps of 1e-9 with max_steps 1e9 (170 s for one call on 64 rows).
    expect_status("SF_ERR_LIMIT", lambda: swiftflows.Flow.from_bytes(
        cnf_file(solver="euler", step_size=1e-9, max_steps=np.int64(10**9))), "max_steps")
    expect_status("SF_ERR_FORMAT", lambda: swiftflows.Flow.from_bytes(
        cnf_file(solver="euler", step_size=1e-9, max_steps=np.int64(100000))), "needs", "max_steps")
    expect_status("SF_ERR_LIMIT", lambda: swiftflows.Flow(
        {"event_shape": [2], "layers": [{"type": "cnf", "max_steps": 2**53}]}), "max_steps")
    swiftflows.Flow.from_bytes(cnf_file(solver="euler", step_size=1e-5, max_steps=np.int64(100000)))


def test_a_long_cnf_call_is_cancelled_from_another_thread():
    flow = swiftflows.Flow({"event_shape": [2], "layers": [{"type": "cnf", "hidden": [64, 64], "rtol": 1e-12,
                                                            "atol": 1e-12, "max_steps": 100000}]}, seed=1)
    x = np.random.default_rng(1).normal(size=(256, 2)).astype(np.float32)
    outcome = {}

    def call():
        try:
            flow.log_prob(x)
            outcome["status"] = "finished"
        except swiftflows.SwiftFlowsError as e:
            outcome["status"] = e.status_name
        outcome["time"] = time.monotonic()

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.3)
    cancelled = time.monotonic()
    flow.cancel()
    t.join(60)
    assert not t.is_alive()
    assert outcome["status"] == "SF_ERR_CANCELLED"
    assert outcome["time"] - cancelled < 5
    assert flow.spec["layers"][0]["type"] == "cnf"  # later calls run normally


# ---- 5. save targets ------------------------------------------------------------------------------

def test_saving_onto_a_fifo_or_device_is_refused(tmp_path):
    flow = swiftflows.RealNVP(2, layers=2, hidden=(4,), seed=1)
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    expect_status("SF_ERR_IO", lambda: flow.save(fifo), "not a regular file", "FIFO")
    assert fifo.is_fifo()
    if os.geteuid() == 0:
        dev = tmp_path / "null.h5"
        os.mknod(dev, 0o600 | 0o020000, os.stat("/dev/null").st_rdev)
        expect_status("SF_ERR_IO", lambda: flow.save(dev), "character device")
        assert dev.is_char_device()


def test_saving_through_a_symbolic_link_replaces_its_target(tmp_path):
    a = swiftflows.RealNVP(2, layers=2, hidden=(4,), seed=1)
    b = swiftflows.RealNVP(2, layers=2, hidden=(4,), seed=2)
    real, link = tmp_path / "real.h5", tmp_path / "latest.h5"
    a.save(real)
    link.symlink_to("real.h5")
    b.save(link)
    assert link.is_symlink() and os.readlink(link) == "real.h5"
    assert swiftflows.Flow.load(real).spec == b.spec
    dangling = tmp_path / "dangling.h5"
    dangling.symlink_to("missing.h5")
    expect_status("SF_ERR_IO", lambda: b.save(dangling), "symbolic link")
    assert dangling.is_symlink() and not dangling.exists()


# ---- 6. training that would make parameters non-finite -------------------------------------------

def test_a_step_that_overflows_is_undone_and_reported(tmp_path):
    flow = swiftflows.RealNVP(2, layers=4, hidden=(16,), seed=1)
    x = np.random.default_rng(2).normal(size=(512, 2)).astype(np.float32)
    flow.fit(x, epochs=1, batch_size=128, validation=0.0, progress=False)
    before = flow.log_prob(x)
    events = []
    history = flow.fit(x, epochs=1, batch_size=128, lr=1e300, validation=0.0,
                       checkpoint=tmp_path / "checkpoint.h5", progress=events.append)
    assert history[-1].skipped_steps == 4
    skipped = [e for e in events if e["kind"] == "skipped"]
    assert len(skipped) == 4 and all("non-finite" in e["message"] for e in skipped), skipped
    assert np.array_equal(flow.log_prob(x), before)
    flow.save(tmp_path / "model.h5")
    assert np.array_equal(swiftflows.Flow.load(tmp_path / "model.h5").log_prob(x), before)
    swiftflows.Flow.load(tmp_path / "checkpoint.h5")


# ---- 7. models that cannot be inverted -----------------------------------------------------------

def test_a_singular_plain_1x1_convolution_does_not_load():
    flow = swiftflows.Flow({"event_shape": [2, 4, 4], "layers": [{"type": "invertible_conv1x1", "lu": False}]}, seed=1)
    zero = edited(flow.to_bytes(), lambda f: f["layers/0000/weight"].__setitem__(Ellipsis, 0))
    expect_status("SF_ERR_NUMERIC", lambda: swiftflows.Flow.from_bytes(zero), "singular")
    nearly = edited(flow.to_bytes(), lambda f: f["layers/0000/weight"].__setitem__(
        Ellipsis, np.array([[1, 1], [1, 1 + 1e-7]], np.float32)))
    expect_status("SF_ERR_NUMERIC", lambda: swiftflows.Flow.from_bytes(nearly), "condition number")


@pytest.mark.parametrize("value", [1e30, -1e30, 100.0, -100.0, 30.5])
def test_log_scales_out_of_range_do_not_load(value):
    base = swiftflows.Flow({"event_shape": [2], "base": {"type": "diagonal_normal"}, "layers": []}, seed=1)
    data = edited(base.to_bytes(), lambda f: f["base/log_scale"].__setitem__(Ellipsis, value))
    expect_status("SF_ERR_FORMAT", lambda: swiftflows.Flow.from_bytes(data), "/base/log_scale", "±30")
    lu = swiftflows.Flow({"event_shape": [3], "layers": [{"type": "lu_linear"}]}, seed=1)
    data = edited(lu.to_bytes(), lambda f: f["layers/0000/log_scale"].__setitem__(Ellipsis, value))
    expect_status("SF_ERR_FORMAT", lambda: swiftflows.Flow.from_bytes(data), "/layers/0000/log_scale")


def test_log_scales_at_the_bound_load_and_round_trip():
    base = swiftflows.Flow({"event_shape": [3], "base": {"type": "diagonal_normal"},
                            "layers": [{"type": "actnorm", "initialized": True}]}, seed=1)

    def edit(f):
        f["base/log_scale"][...] = [30.0, -30.0, 1.0]
        f["layers/0000/log_scale"][...] = [-30.0, 30.0, 0.5]
    flow = swiftflows.Flow.from_bytes(edited(base.to_bytes(), edit))
    x = np.random.default_rng(3).normal(size=(16, 3)).astype(np.float32)
    z, _ = flow.forward(x)
    back, _ = flow.inverse(z)
    assert np.all(np.isfinite(z)) and np.all(np.isfinite(flow.log_prob(x)))
    assert np.allclose(back, x, rtol=1e-5, atol=1e-6)
    samples = flow.sample(16, seed=1)
    assert np.all(np.isfinite(samples))


def test_an_ill_conditioned_lu_weight_does_not_load():
    """In range, but e^30 and e^-30 on one diagonal: the inverse would be useless in float32."""
    lu = swiftflows.Flow({"event_shape": [3], "layers": [{"type": "lu_linear"}]}, seed=1)
    data = edited(lu.to_bytes(), lambda f: f["layers/0000/log_scale"].__setitem__(Ellipsis, [30.0, -30.0, 1.0]))
    expect_status("SF_ERR_NUMERIC", lambda: swiftflows.Flow.from_bytes(data), "layer 0 (lu_linear)", "condition number")
    conv = swiftflows.Flow({"event_shape": [3, 2, 2], "layers": [{"type": "invertible_conv1x1"}]}, seed=1)
    data = edited(conv.to_bytes(), lambda f: f["layers/0000/log_scale"].__setitem__(Ellipsis, [20.0, -20.0, 0.0]))
    expect_status("SF_ERR_NUMERIC", lambda: swiftflows.Flow.from_bytes(data), "invertible_conv1x1", "condition number")


# ---- 9. Flow.close and __init__ ------------------------------------------------------------------

def test_close_refuses_new_calls_while_it_waits():
    flow = swiftflows.Flow({"event_shape": [2], "layers": [{"type": "cnf", "hidden": [64, 64], "rtol": 1e-12,
                                                            "atol": 1e-12, "max_steps": 100000}]}, seed=1)
    x = np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)
    results = []

    def busy():
        try:
            flow.log_prob(x)
            results.append("finished")
        except swiftflows.SwiftFlowsError as e:
            results.append(e.status_name)

    worker = threading.Thread(target=busy)
    worker.start()
    time.sleep(0.3)
    closer = threading.Thread(target=flow.close)
    closer.start()
    time.sleep(0.2)
    assert flow.closed, "closed as soon as close() is called"
    with pytest.raises(ValueError, match="closed"):
        flow.log_prob(x[:1])
    flow.cancel()  # lets the running call (and close) finish
    worker.join(30)
    closer.join(30)
    assert not closer.is_alive() and results == ["SF_ERR_CANCELLED"]


class _FreeCounter:
    """Stands in for the library in flow.py, counting sf_model_free calls."""

    def __init__(self, lib):
        self._lib = lib
        self.freed = []

    def sf_model_free(self, handle):
        self.freed.append(ctypes_address(handle))
        self._lib.sf_model_free(handle)

    def __getattr__(self, name):
        return getattr(self._lib, name)


def ctypes_address(handle):
    import ctypes
    return ctypes.cast(handle, ctypes.c_void_p).value


def test_calling_init_twice_releases_the_first_model(monkeypatch):
    counter = _FreeCounter(flow_module.lib)
    monkeypatch.setattr(flow_module, "lib", counter)
    flow = swiftflows.Flow({"preset": "realnvp", "dim": 2, "layers": 2}, seed=1)
    first = ctypes_address(flow._ptr)
    flow.__init__({"preset": "realnvp", "dim": 3, "layers": 2}, seed=2)
    assert counter.freed == [first]
    assert flow.event_shape == (3,) and not flow.closed
    flow.close()
    assert len(counter.freed) == 2
    assert math.prod(flow._event_shape) == 3
