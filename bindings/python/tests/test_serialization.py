"""Saving and loading: in-memory images, files, atomic replacement, pickling."""

import copy
import os
import pickle

import numpy as np
import pytest

import swiftflows
from swiftflows import Flow

from conftest import all_layers_spec, datasets, randomized


@pytest.fixture(scope="module")
def flow():
    return randomized(Flow.from_spec(all_layers_spec(4), seed=21), seed=6)


def assert_same_outputs(a, b, x):
    np.testing.assert_array_equal(a.log_prob(x), b.log_prob(x))
    za, lda = a.forward(x)
    zb, ldb = b.forward(x)
    np.testing.assert_array_equal(za, zb)
    np.testing.assert_array_equal(lda, ldb)
    np.testing.assert_array_equal(a.inverse(x)[0], b.inverse(x)[0])
    np.testing.assert_array_equal(a.sample(50, seed=3), b.sample(50, seed=3))


def assert_same_parameters(image_a, image_b):
    da, db = datasets(image_a), datasets(image_b)
    assert sorted(da) == sorted(db)
    assert any(v.dtype == np.float32 and v.size for v in da.values())
    for name in da:
        assert da[name].dtype == db[name].dtype, name
        assert da[name].shape == db[name].shape, name
        assert da[name].tobytes() == db[name].tobytes(), name  # bit-exact


def test_bytes_round_trip_is_bit_exact(flow, rng):
    data = flow.to_bytes()
    # The checksum block (512-byte HDF5 user block), then the HDF5 superblock.
    assert isinstance(data, bytes) and data.startswith(b"SWIFTFLOWS-CHECKSUM 1\n")
    assert data[512:520] == b"\x89HDF\r\n\x1a\n"
    again = Flow.from_bytes(data)
    assert again.spec == flow.spec
    assert again.num_parameters == flow.num_parameters
    assert_same_parameters(data, again.to_bytes())
    assert_same_outputs(flow, again, rng.standard_normal((64, 4)))


def test_from_bytes_accepts_any_bytes_like(flow, rng):
    data = flow.to_bytes()
    x = rng.standard_normal((8, 4))
    expected = flow.log_prob(x)
    for buffer in (bytearray(data), memoryview(data), np.frombuffer(data, dtype=np.uint8)):
        np.testing.assert_array_equal(Flow.from_bytes(buffer).log_prob(x), expected)
    with pytest.raises(TypeError):
        Flow.from_bytes("not bytes")


def test_file_round_trip(flow, tmp_path, rng):
    path = tmp_path / "model.h5"
    flow.save(path)  # os.PathLike
    loaded = Flow.load(str(path))  # str
    assert_same_outputs(flow, loaded, rng.standard_normal((64, 4)))
    assert_same_parameters(flow.to_bytes(), loaded.to_bytes())
    assert_same_parameters(path.read_bytes(), flow.to_bytes())
    loaded_b = Flow.load(os.fsencode(path))  # bytes
    assert loaded_b.spec == flow.spec


def test_paths_with_non_ascii_characters(flow, tmp_path):
    path = tmp_path / "modèle ü 模型.h5"
    flow.save(path)
    assert path.exists()
    assert Flow.load(path).spec == flow.spec


def test_save_replaces_an_existing_file_and_leaves_no_temporary_files(flow, tmp_path, rng):
    path = tmp_path / "model.h5"
    path.write_bytes(b"an older file that is not a model" * 100)
    other = swiftflows.RealNVP(4, layers=2, hidden=(8,), seed=1)
    other.save(path)
    assert Flow.load(path).spec == other.spec
    flow.save(path)  # over an existing valid model
    loaded = Flow.load(path)
    assert loaded.spec == flow.spec
    assert_same_outputs(flow, loaded, rng.standard_normal((16, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]


def test_failed_save_leaves_the_directory_unchanged(flow, tmp_path):
    missing_dir = tmp_path / "no" / "such" / "dir" / "model.h5"
    with pytest.raises(swiftflows.SwiftFlowsError) as info:
        flow.save(missing_dir)
    assert info.value.status_name == "SF_ERR_IO"
    assert list(tmp_path.iterdir()) == []


def test_pickle_round_trip(flow, rng):
    x = rng.standard_normal((32, 4))
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        clone = pickle.loads(pickle.dumps(flow, protocol=protocol))
        assert type(clone) is Flow and clone is not flow
        assert_same_outputs(flow, clone, x)
    assert_same_outputs(flow, copy.deepcopy(flow), x)
    assert_same_outputs(flow, copy.copy(flow), x)


def test_pickle_of_a_closed_flow_fails_cleanly():
    flow = swiftflows.RealNVP(2, layers=1, hidden=(4,))
    flow.close()
    with pytest.raises(ValueError, match="closed"):
        pickle.dumps(flow)


def test_pickled_subclass_stays_a_subclass(rng):
    class MyFlow(Flow):
        pass

    flow = MyFlow.from_spec({"event_shape": [2], "layers": [{"type": "lu_linear"}]}, seed=3)
    assert type(flow) is MyFlow
    globals()["MyFlow"] = MyFlow  # picklable by reference
    MyFlow.__qualname__ = "MyFlow"
    try:
        clone = pickle.loads(pickle.dumps(flow))
    finally:
        del globals()["MyFlow"]
    assert type(clone) is MyFlow
    x = rng.standard_normal((4, 2))
    np.testing.assert_array_equal(clone.log_prob(x), flow.log_prob(x))
