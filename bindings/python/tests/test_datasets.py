"""swiftflows.datasets: the library's toy data sets (sf_toy_dataset)."""

import math

import numpy as np
import pytest

import swiftflows
from swiftflows import SwiftFlowsError, datasets


@pytest.mark.parametrize("name", datasets.TOY_NAMES)
def test_shape_dtype_and_determinism(name):
    x = datasets.toy(name, 1000, seed=3)
    assert x.shape == (1000, 2) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.isfinite(x).all()
    assert np.unique(x, axis=0).shape[0] > 900  # points, not a constant
    np.testing.assert_array_equal(datasets.toy(name, 1000, seed=3), x)
    other = datasets.toy(name, 1000, seed=4)
    assert not np.array_equal(other, x)


def test_names_match_the_library():
    assert datasets.TOY_NAMES == ("8gaussians", "checkerboard", "rings", "moons", "circles", "swissroll",
                                  "pinwheel", "2spirals")
    with pytest.raises(SwiftFlowsError) as info:
        datasets.toy("spirals3", 10)
    err = info.value
    assert err.status_name == "SF_ERR_INVALID_ARGUMENT" and err.function == "sf_toy_dataset"
    assert "spirals3" in err.message
    for name in datasets.TOY_NAMES:  # the message lists the known names
        assert name in err.message, err.message


def test_known_geometry():
    g = datasets.toy("8gaussians", 20000, seed=0)
    radius = np.hypot(g[:, 0], g[:, 1])
    assert abs(np.median(radius) - 4 / 1.414) < 0.1  # centres at radius 4 / 1.414, scale 0.5 / 1.414
    angles = np.round(np.arctan2(g[:, 1], g[:, 0]) / (np.pi / 4)) % 8
    counts = np.bincount(angles.astype(int), minlength=8)
    assert counts.min() > 2000  # eight clusters, about 2500 points each
    c = datasets.toy("checkerboard", 20000, seed=0)
    assert np.abs(c).max() <= 4.0
    cells = (np.floor(c[:, 0] / 2) + np.floor(c[:, 1] / 2)) % 2
    assert len(np.unique(cells)) == 1  # only the "black" squares
    r = np.hypot(*datasets.toy("rings", 20000, seed=0).T)
    assert r.max() < 3.5 and r.min() < 1.0


def test_sizes_and_argument_types():
    assert datasets.toy("moons", 0).shape == (0, 2)
    assert datasets.toy("moons", 1).shape == (1, 2)
    datasets.toy("moons", 5, seed=2**64 - 1)
    with pytest.raises(ValueError):
        datasets.toy("moons", -1)
    with pytest.raises(ValueError):
        datasets.toy("moons", 5, seed=-1)
    with pytest.raises(TypeError):
        datasets.toy("moons", 5.0)
    with pytest.raises(TypeError):
        datasets.toy(b"moons", 5)
    with pytest.raises(ValueError):
        datasets.toy("moons\0", 5)


def test_entropies():
    assert datasets.entropy("8gaussians") == pytest.approx(2.831)
    assert datasets.entropy("checkerboard") == pytest.approx(math.log(32)) == pytest.approx(3.4657, abs=1e-4)
    assert datasets.entropy("rings") == pytest.approx(2.624)
    for name in ("moons", "circles", "swissroll", "pinwheel", "2spirals"):
        assert datasets.entropy(name) is None
    with pytest.raises(ValueError, match="known"):
        datasets.entropy("gaussians")


def test_exported_from_the_package():
    assert swiftflows.datasets is datasets
    assert "datasets" in swiftflows.__all__
