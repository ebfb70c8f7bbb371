"""The file checksum and the checks of damaged or hostile model files and checkpoints
(docs/model-format.md, "File checksum and pre-checks"; include/swiftflows.h, sf_model_load)."""

import shutil
import zlib

import numpy as np
import pytest

import swiftflows
from swiftflows import Flow, SwiftFlowsError
from swiftflows.integrity import USER_BLOCK_SIZE, checksum_header, is_sealed, reseal_bytes

from conftest import expect_status

h5py = pytest.importorskip("h5py")


@pytest.fixture
def flow():
    return swiftflows.RealNVP(2, layers=2, hidden=(8,), seed=3)


def test_saved_files_are_sealed_and_h5py_reads_them(flow, tmp_path):
    path = tmp_path / "model.h5"
    flow.save(path)
    data = path.read_bytes()
    header = b"SWIFTFLOWS-CHECKSUM 1\nsize %d\ncrc32 %08x\n" % (len(data), zlib.crc32(data[512:]))
    assert data.startswith(header) and data[len(header):512] == bytes(512 - len(header))
    assert data[512:520] == b"\x89HDF\r\n\x1a\n" and is_sealed(data) and is_sealed(flow.to_bytes())
    with h5py.File(path, "r") as f:
        assert f.userblock_size == USER_BLOCK_SIZE
        assert f.attrs["format"] == "swiftflows-model" and int(f["layers"].attrs["count"]) == 2


def test_damaged_files_give_sf_err_corrupt(flow):
    data = flow.to_bytes()
    expect_status("SF_ERR_CORRUPT", lambda: Flow.from_bytes(data[:-1]), "truncated")
    expect_status("SF_ERR_CORRUPT", lambda: Flow.from_bytes(data[:300]), "truncated")
    expect_status("SF_ERR_CORRUPT", lambda: Flow.from_bytes(data + b"\0"), "bytes were added")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    err = expect_status("SF_ERR_CORRUPT", lambda: Flow.from_bytes(bytes(flipped)), "checksum mismatch")
    assert "swiftflows.reseal" in err.message
    damaged = bytearray(data)
    damaged[40] = ord("?")  # inside the crc32 line
    expect_status("SF_ERR_CORRUPT", lambda: Flow.from_bytes(bytes(damaged)), "checksum block")
    newer = data.replace(b"SWIFTFLOWS-CHECKSUM 1\n", b"SWIFTFLOWS-CHECKSUM 2\n", 1)
    expect_status("SF_ERR_UNSUPPORTED_VERSION", lambda: Flow.from_bytes(newer), "version 2")


def test_edit_with_h5py_then_reseal(flow, tmp_path):
    path = tmp_path / "model.h5"
    flow.save(path)
    with h5py.File(path, "r+") as f:
        f["layers/0000/bias_1"][...] = np.array([0.5, 0.25], dtype=np.float32)
    expect_status("SF_ERR_CORRUPT", lambda: Flow.load(path), "checksum mismatch")
    swiftflows.reseal(path)
    x = np.array([[0.1, 0.2], [1.0, -1.0]])
    assert not np.array_equal(Flow.load(path).log_prob(x), flow.log_prob(x))
    assert list(tmp_path.iterdir()) == [path]
    # An h5py file has no user block: nothing to reseal, and it loads as it is.
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="user block"):
        swiftflows.reseal(plain)


def _copy_as_h5py(src, dst, libver):
    """Rewrites a model file with h5py alone (no user block, no checksum)."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w", libver=libver) as g:
        for key, value in f.attrs.items():
            g.attrs[key] = value
        for name in f:
            f.copy(f[name], g, name)


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_files_written_by_h5py_alone_load(flow, tmp_path, libver):
    src, dst = tmp_path / "model.h5", tmp_path / "h5py.h5"
    flow.save(src)
    _copy_as_h5py(src, dst, libver)
    assert not dst.read_bytes().startswith(b"SWIFTFLOWS")
    x = np.array([[0.3, -0.7]])
    np.testing.assert_array_equal(Flow.load(dst).log_prob(x), flow.log_prob(x))
    # A damaged h5py file (no checksum to catch it) still fails with a status, not a crash.
    data = bytearray(dst.read_bytes())
    del data[len(data) // 2:]
    with pytest.raises(SwiftFlowsError):
        Flow.from_bytes(bytes(data))


def test_damaged_global_heap_is_refused_even_with_a_valid_checksum(flow):
    data = bytearray(flow.to_bytes())
    gcol = data.find(b"GCOL", USER_BLOCK_SIZE)
    assert gcol > 0
    data[gcol + 16:gcol + 32] = bytes(16)  # first object: free space of size 0 (HDF5 1.10 loops on it)
    expect_status("SF_ERR_CORRUPT", lambda: Flow.from_bytes(reseal_bytes(data)), "global heap")
    data[:USER_BLOCK_SIZE] = bytes(USER_BLOCK_SIZE)  # and as a file without checksum
    expect_status("SF_ERR_CORRUPT", lambda: Flow.from_bytes(bytes(data)), "global heap")


def test_checksum_header_matches_the_library(flow):
    data = flow.to_bytes()
    assert checksum_header(data) == data[:USER_BLOCK_SIZE]
    assert reseal_bytes(data) == data


# ---- hostile checkpoints: every value range-checked before use ------------------------------

@pytest.fixture
def checkpoint(tmp_path):
    data = swiftflows.datasets.toy("moons", 512, seed=1)
    path = tmp_path / "ckpt.h5"
    flow = swiftflows.RealNVP(2, layers=1, hidden=(4,), seed=2)
    flow.fit(data, epochs=2, batch_size=128, checkpoint=path, progress=False)
    return path, data


def _edited_checkpoint(checkpoint, tmp_path, edit):
    path, data = checkpoint
    out = tmp_path / "edited.h5"
    shutil.copy(path, out)
    with h5py.File(out, "r+") as f:
        edit(f["training"])
    swiftflows.reseal(out)
    return out, data


def _set_first(name, value):
    def edit(g):
        a = g[name][...]
        a.flat[0] = value
        g[name][...] = a
    return edit


@pytest.mark.parametrize("edit,status,fragment", [
    (lambda g: g.attrs.__setitem__("bad_epochs", np.int64(2**63 - 1)), "SF_ERR_FORMAT", "bad_epochs"),
    (lambda g: g.attrs.__setitem__("best_epoch", np.int64(-4)), "SF_ERR_FORMAT", "best_epoch"),
    (lambda g: g.attrs.__setitem__("step", np.int64(-1)), "SF_ERR_FORMAT", "step"),
    (lambda g: g.attrs.__setitem__("epochs_completed", np.int64(2**62)), "SF_ERR_FORMAT", "epochs_completed"),
    (lambda g: g.attrs.__setitem__("epochs", np.int64(2**62)), "SF_ERR_FORMAT", "epochs"),
    (lambda g: g.attrs.__setitem__("best_validation_nll", np.float64(np.nan)), "SF_ERR_FORMAT", "best_validation_nll"),
    (_set_first("history", np.nan), "SF_ERR_FORMAT", "history row 0"),
    (_set_first("history", 1e300), "SF_ERR_FORMAT", "history row 0"),
    (_set_first("optimizer/first_0000", np.inf), "SF_ERR_NUMERIC", "first_0000"),
    (_set_first("optimizer/second_0000", -1.0), "SF_ERR_NUMERIC", "second_0000"),
], ids=["bad-epochs-max", "best-epoch-negative", "step-negative", "epochs-completed-huge", "epochs-huge",
        "best-nll-nan", "history-nan", "history-huge", "first-moment-inf", "second-moment-negative"])
def test_hostile_checkpoint_values_are_refused(checkpoint, tmp_path, edit, status, fragment):
    path, data = _edited_checkpoint(checkpoint, tmp_path, edit)
    Flow.load(path).close()  # the model part is intact
    expect_status(status, lambda: Flow.resume(path, data, epochs=3, progress=False), fragment)
