"""Error paths: every failure is a Python exception with a useful message, never a crash."""

import shutil

import numpy as np
import pytest

import swiftflows
from swiftflows import Flow, SwiftFlowsError

h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def flow():
    return swiftflows.RealNVP(2, layers=2, hidden=(8,), seed=1)


@pytest.fixture
def saved(tmp_path, flow):
    path = tmp_path / "model.h5"
    flow.save(path)
    return path


def edited(saved, tmp_path, edit):
    path = tmp_path / "edited.h5"
    shutil.copy(saved, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    swiftflows.reseal(path)  # a deliberate edit: update the file checksum
    return path


def expect_status(status_name, fn, *fragments):
    with pytest.raises(SwiftFlowsError) as info:
        fn()
    err = info.value
    assert err.status_name == status_name, str(err)
    assert isinstance(err.status, int) and err.status != 0
    assert isinstance(err.message, str) and err.message
    assert status_name in str(err) and err.message in str(err)
    for fragment in fragments:
        assert fragment in err.message, (fragment, err.message)
    return err


# ---- shapes and input types ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["log_prob", "forward", "inverse"])
@pytest.mark.parametrize("shape", [(5, 3), (3,), (), (2, 2, 1), (0, 3)])
def test_wrong_shapes_raise_value_error_naming_both_shapes(flow, method, shape):
    with pytest.raises(ValueError) as info:
        getattr(flow, method)(np.zeros(shape))
    message = str(info.value)
    assert "(..., 2)" in message and str(shape) in message


def test_wrong_image_shape_message():
    flow = Flow.from_spec({"event_shape": [1, 4, 4], "layers": [{"type": "actnorm"}]})
    with pytest.raises(ValueError, match=r"expected an array of shape \(\.\.\., 1, 4, 4\), got \(3, 4, 4\)"):
        flow.log_prob(np.zeros((3, 4, 4)))
    assert flow.log_prob(np.zeros((3, 1, 4, 4))).shape == (3,)


@pytest.mark.parametrize("bad", [
    "abc", ["a", "b"], [["1.0", "2.0"]], np.array([[1 + 2j, 0]]), [[None, 1.0]], [[1.0], [2.0, 3.0]],
    {"x": 1}, np.array([[b"a", b"b"]]), np.zeros((1, 2), dtype="datetime64[s]"),
], ids=["str", "str-list", "numeric-strings", "complex", "none", "ragged", "dict", "bytes", "datetime"])
def test_non_numeric_input_raises_type_or_value_error(flow, bad):
    for method in (flow.log_prob, flow.forward, flow.inverse):
        with pytest.raises((TypeError, ValueError)):
            method(bad)


# ---- specs ----------------------------------------------------------------------------------

def test_unknown_layer_type_in_spec():
    expect_status("SF_ERR_UNKNOWN_TYPE",
                  lambda: Flow.from_spec({"event_shape": [2], "layers": [{"type": "glow_step"}]}),
                  "glow_step")


def test_unknown_base_type_in_spec():
    expect_status("SF_ERR_UNKNOWN_TYPE",
                  lambda: Flow.from_spec({"event_shape": [2], "base": {"type": "student_t"}}), "student_t")


def test_bad_json():
    expect_status("SF_ERR_SPEC", lambda: Flow.from_spec('{"event_shape": [2], '), "JSON")
    expect_status("SF_ERR_SPEC", lambda: Flow.from_spec(""), "JSON")
    expect_status("SF_ERR_SPEC", lambda: Flow.from_spec("[1, 2]"))


def test_unknown_preset():
    expect_status("SF_ERR_UNKNOWN_TYPE", lambda: Flow.from_spec({"preset": "glow2", "dim": 2}), "glow2")


@pytest.mark.parametrize("spec,fragment", [
    ({"event_shape": [2], "foo": 1}, "foo"),
    ({"event_shape": [1], "layers": [{"type": "affine_coupling", "mask": "alternating"}]}, "mask"),
    ({"event_shape": [2], "layers": [{"type": "affine_coupling", "activation": "gelu"}]}, "gelu"),
    ({"event_shape": [2], "layers": [{"type": "permutation", "indices": [0, 5]}]}, "permutation"),
    ({"event_shape": [2], "layers": [{"type": "affine_coupling", "hidden": [-3]}]}, "-3"),
    ({"event_shape": []}, "event_shape"),
    ({"preset": "realnvp", "dim": 0}, "dim"),
    ({"preset": "realnvp", "dim": 2, "mixing": "shuffle"}, "shuffle"),
    ({"preset": "nice", "dim": 2, "clamp": 3}, "clamp"),
])
def test_invalid_specs(spec, fragment):
    expect_status("SF_ERR_SPEC", lambda: Flow.from_spec(spec), fragment)


def test_size_limits():
    expect_status("SF_ERR_LIMIT", lambda: Flow.from_spec({"event_shape": [2**25]}))
    expect_status("SF_ERR_LIMIT", lambda: Flow.from_spec("[" * 10000 + "]" * 10000))


def test_preset_arguments_are_checked():
    expect_status("SF_ERR_SPEC", lambda: swiftflows.RealNVP(0))
    expect_status("SF_ERR_SPEC", lambda: swiftflows.NICE(2, layers=0))
    with pytest.raises(TypeError):
        swiftflows.RealNVP(2.5)
    with pytest.raises(TypeError):
        swiftflows.RealNVP(2, hidden="64")
    with pytest.raises(TypeError):
        swiftflows.NICE(2, hidden=(64, 1.5))


def test_spec_argument_types():
    with pytest.raises(TypeError):
        Flow.from_spec(42)
    with pytest.raises(TypeError):
        Flow.from_spec({"event_shape": [2], "bad": object()})
    with pytest.raises(ValueError):
        Flow.from_spec({"preset": "realnvp", "dim": 2, "clamp": float("nan")})
    with pytest.raises(ValueError):
        Flow.from_spec('{"event_shape": [2]}\0 trailing')
    with pytest.raises(TypeError):
        Flow.from_spec({"event_shape": [2]}, seed="1")
    with pytest.raises(ValueError):
        Flow.from_spec({"event_shape": [2]}, seed=-5)


# ---- files and images -----------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "missing.h5"
    expect_status("SF_ERR_IO", lambda: Flow.load(path), "missing.h5")


def test_directory_instead_of_a_file(tmp_path):
    expect_status("SF_ERR_IO", lambda: Flow.load(tmp_path))


def test_non_hdf5_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("hello, this is not HDF5\n" * 20)
    expect_status("SF_ERR_FORMAT", lambda: Flow.load(path))


def test_hdf5_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(10))
    expect_status("SF_ERR_FORMAT", lambda: Flow.load(path), "format")


def test_garbage_and_truncated_bytes(flow):
    expect_status("SF_ERR_FORMAT", lambda: Flow.from_bytes(np.random.default_rng(0).bytes(4096)))
    data = flow.to_bytes()
    expect_status("SF_ERR_CORRUPT", lambda: Flow.from_bytes(data[: len(data) // 2]), "truncated")
    expect_status("SF_ERR_FORMAT", lambda: Flow.from_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200)))
    with pytest.raises(SwiftFlowsError) as info:
        Flow.from_bytes(b"")
    assert info.value.status_name in ("SF_ERR_FORMAT", "SF_ERR_INVALID_ARGUMENT")


def test_newer_major_format_version(saved, tmp_path):
    path = edited(saved, tmp_path, lambda f: f.attrs.__setitem__("format_version", np.array([2, 0])))
    expect_status("SF_ERR_UNSUPPORTED_VERSION", lambda: Flow.load(path), "2.0", "1.")


def test_newer_minor_format_version_is_accepted(saved, tmp_path, flow):
    path = edited(saved, tmp_path, lambda f: f.attrs.__setitem__("format_version", np.array([1, 9])))
    x = np.ones((2, 2))
    np.testing.assert_array_equal(Flow.load(path).log_prob(x), flow.log_prob(x))


def test_wrong_format_name(saved, tmp_path):
    path = edited(saved, tmp_path, lambda f: f.attrs.__setitem__("format", "other-model"))
    expect_status("SF_ERR_FORMAT", lambda: Flow.load(path), "other-model")


def test_unknown_layer_type_in_a_file(saved, tmp_path):
    path = edited(saved, tmp_path, lambda f: f["layers/0001"].attrs.__setitem__("type", "glow_step"))
    expect_status("SF_ERR_UNKNOWN_TYPE", lambda: Flow.load(path), "glow_step", "0001")


def test_unknown_base_type_in_a_file(saved, tmp_path):
    path = edited(saved, tmp_path, lambda f: f["base"].attrs.__setitem__("type", "student_t"))
    expect_status("SF_ERR_UNKNOWN_TYPE", lambda: Flow.load(path), "student_t", "base")


def _replace(f, name, data):
    del f[name]
    f.create_dataset(name, data=data)


@pytest.mark.parametrize("edit,fragments", [
    (lambda f: _replace(f, "layers/0000/weight_0", np.zeros((8, 3), np.float32)),
     ["weight_0", "[8, 3]", "[8, 1]"]),
    (lambda f: f["layers"].attrs.__setitem__("count", 3), ["0002"]),
    (lambda f: f.move("layers/0001", "layers/0002"), ["0001"]),
    (lambda f: f.__delitem__("base"), ["base"]),
    (lambda f: f.__delitem__("layers/0000/bias_1"), ["bias_1"]),
    (lambda f: f["layers/0000/mask"].__setitem__(Ellipsis, np.array([2, 0])), ["mask"]),
    (lambda f: f.attrs.__setitem__("event_shape", np.array([3])), []),
    (lambda f: f.attrs.__setitem__("event_shape", np.array([0])), ["event_shape"]),
    (lambda f: f["layers/0000"].attrs.__setitem__("clamp", "five"), ["clamp"]),
    (lambda f: _replace(f, "layers/0000/weight_0", np.zeros((8, 1), np.int32)), ["weight_0"]),
], ids=["shape", "count", "gap", "no-base", "no-dataset", "mask", "event-shape",
        "zero-extent", "clamp-type", "int-params"])
def test_malformed_files(saved, tmp_path, edit, fragments):
    path = edited(saved, tmp_path, edit)
    expect_status("SF_ERR_FORMAT", lambda: Flow.load(path), *fragments)


@pytest.mark.parametrize("edit,fragment", [
    (lambda f: f["layers/0000/bias_0"].__setitem__(0, np.nan), "layers/0000/bias_0"),
    (lambda f: f["layers/0001/weight_1"].__setitem__((0, 0), np.inf), "layers/0001/weight_1"),
    (lambda f: f["layers/0001/weight_1"].__setitem__((1, 2), -np.inf), "layers/0001/weight_1"),
], ids=["nan", "inf", "-inf"])
def test_non_finite_parameters_are_refused(saved, tmp_path, edit, fragment):
    path = edited(saved, tmp_path, edit)
    expect_status("SF_ERR_NUMERIC", lambda: Flow.load(path), fragment, "NaN or infinite")
    expect_status("SF_ERR_NUMERIC", lambda: Flow.from_bytes(path.read_bytes()), fragment)


def test_bad_path_arguments(flow, tmp_path):
    with pytest.raises(ValueError):
        Flow.load(str(tmp_path / "a\0b.h5"))
    with pytest.raises(ValueError):
        flow.save(str(tmp_path / "a\0b.h5"))
    with pytest.raises(TypeError):
        Flow.load(42)
    with pytest.raises(TypeError):
        flow.save(None)
    assert list(tmp_path.iterdir()) == []


# ---- closed flows and library settings -------------------------------------------------------

def test_closed_flow_raises_value_error():
    flow = swiftflows.RealNVP(2, layers=1, hidden=(4,))
    with flow as same:
        assert same is flow
    assert flow.closed
    assert repr(flow) == "Flow(closed)"
    flow.close()  # idempotent
    x = np.zeros((1, 2))
    calls = [lambda: flow.log_prob(x), lambda: flow.forward(x), lambda: flow.inverse(x),
             lambda: flow.sample(3, seed=1), lambda: flow.to_bytes(), lambda: flow.save("x.h5"),
             lambda: flow.spec, lambda: flow.event_shape, lambda: flow.event_size,
             lambda: flow.num_parameters]
    for call in calls:
        with pytest.raises(ValueError, match="closed"):
            call()
    with pytest.raises(ValueError, match="closed"):
        with flow:
            pass


def test_num_threads_validation():
    before = swiftflows.get_num_threads()
    for bad in (0, -1, 257):
        expect_status("SF_ERR_INVALID_ARGUMENT", lambda: swiftflows.set_num_threads(bad), "num_threads")
    assert swiftflows.get_num_threads() == before
    with pytest.raises(ValueError):
        swiftflows.set_num_threads(2**40)
    with pytest.raises(TypeError):
        swiftflows.set_num_threads(2.0)


def test_error_is_picklable_and_carries_its_fields():
    import pickle
    err = expect_status("SF_ERR_UNKNOWN_TYPE", lambda: Flow.from_spec({"preset": "glow2", "dim": 2}))
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.status, clone.status_name, clone.message) == (err.status, err.status_name, err.message)
    assert err.status == 7 and err.function == "sf_model_create"


def test_non_finite_inputs_propagate_without_error(flow):
    lp = flow.log_prob(np.array([[np.nan, 0.0], [0.0, 0.0]]))
    assert np.isnan(lp[0]) and np.isfinite(lp[1])
