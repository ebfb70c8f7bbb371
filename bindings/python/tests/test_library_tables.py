"""The package holds no copies of what the library owns: preset defaults (sf_preset_defaults),
toy data names and entropies (sf_toy_dataset_name / _entropy) and the file checksum
(sf_file_checksum_block, sf_file_reseal_memory, sf_file_reseal)."""

import inspect
import os

import pytest

import swiftflows
from swiftflows import _native, datasets, presets
from swiftflows.integrity import USER_BLOCK_SIZE, checksum_header, is_sealed, reseal, reseal_bytes

from conftest import expect_status

#: Python builder of each library preset.
BUILDERS = {"realnvp": presets.RealNVP, "nice": presets.NICE, "nsf": presets.NSF, "maf": presets.MAF,
            "iaf": presets.IAF, "glow": presets.Glow,
            "realnvp_image": presets.RealNVPImage}
#: Arguments of the Python builders that are not preset options.
PYTHON_ONLY = {"seed"}


def test_every_library_preset_has_a_python_builder():
    assert set(_native.preset_names()) == set(BUILDERS)
    assert len(_native.preset_names()) == _native.lib.sf_preset_count()
    assert _native.lib.sf_preset_name(_native.lib.sf_preset_count()) is None


@pytest.mark.parametrize("preset", sorted(BUILDERS))
def test_python_keyword_defaults_equal_the_library_defaults(preset):
    library = _native.preset_defaults(preset)
    params = {name: p for name, p in inspect.signature(BUILDERS[preset]).parameters.items() if name not in PYTHON_ONLY}
    assert set(params) == set(library), "options differ: Python %s, library %s" % (sorted(params), sorted(library))
    for name, param in params.items():
        want = library[name]
        if param.default is inspect.Parameter.empty:
            # A required argument: the library has no default for it either.
            assert want is None, "%s.%s: required in Python, library default %r" % (preset, name, want)
            continue
        got = list(param.default) if isinstance(param.default, tuple) else param.default
        if isinstance(got, bool) or isinstance(want, bool):
            ok = got is want
        else:
            ok = got == want
        assert ok, "%s.%s: Python default %r, library default %r" % (preset, name, param.default, want)


def test_preset_defaults_errors():
    expect_status("SF_ERR_UNKNOWN_TYPE", lambda: _native.preset_defaults("no_such_preset"), "realnvp", "glow")


def test_toy_names_and_entropies_come_from_the_library():
    lib = _native.lib
    names = tuple(lib.sf_toy_dataset_name(i).decode() for i in range(lib.sf_toy_dataset_count()))
    assert datasets.TOY_NAMES == names and len(names) == 8
    assert lib.sf_toy_dataset_name(len(names)) is None
    for name in names:
        assert datasets.entropy(name) == _native.toy_entropy(name)
    expect_status("SF_ERR_INVALID_ARGUMENT", lambda: _native.toy_entropy("no_such_toy"), "8gaussians")


def test_checksum_block_of_any_bytes():
    import zlib
    for data in [b"", b"x" * 100, bytes(range(256)) * 5]:
        block = checksum_header(data)
        text = b"SWIFTFLOWS-CHECKSUM 1\nsize %d\ncrc32 %08x\n" % (len(data), zlib.crc32(data[USER_BLOCK_SIZE:]))
        assert block == text + bytes(USER_BLOCK_SIZE - len(text))
    assert checksum_header(bytearray(b"abc")) == checksum_header(memoryview(b"abc"))


def test_reseal_bytes_and_files(tmp_path):
    flow = swiftflows.RealNVP(2, layers=1, hidden=(4,), seed=1)
    data = flow.to_bytes()
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x10
    assert not is_sealed(damaged)
    fixed = reseal_bytes(damaged)
    assert isinstance(fixed, bytes) and is_sealed(fixed) and fixed[USER_BLOCK_SIZE:] == bytes(damaged[USER_BLOCK_SIZE:])
    assert bytes(damaged[:USER_BLOCK_SIZE]) == data[:USER_BLOCK_SIZE]  # the argument is not changed
    with pytest.raises(ValueError, match="user block"):
        reseal_bytes(b"\0" * 1000)
    path = tmp_path / "m.h5"
    path.write_bytes(bytes(damaged))
    reseal(path)
    assert path.read_bytes() == fixed and os.listdir(tmp_path) == ["m.h5"]
    reseal(str(path))
    assert path.read_bytes() == fixed
    with pytest.raises(swiftflows.SwiftFlowsError) as info:
        reseal(tmp_path / "missing.h5")
    assert info.value.status_name == "SF_ERR_IO"
