"""benchmarks/word_signal.py: the one-attribute changes it measures are valid records and really change the image."""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_loader import load_benchmark

from scott.data.attributes import ATTRIBUTE_NAMES, Attributes
from scott.data.samples import sample


@pytest.fixture(scope="module")
def signal():
    return load_benchmark("word_signal")


def test_other_value_is_a_different_valid_value(signal) -> None:
    rng = np.random.default_rng(0)
    for index in range(300):
        attrs = sample("train", index).attributes
        for name in ATTRIBUTE_NAMES:
            value = signal.other_value(attrs, name, rng)
            assert value != getattr(attrs, name)
            Attributes(**{**{n: getattr(attrs, n) for n in ATTRIBUTE_NAMES}, name: value})  # raises if invalid


def test_data_signal_reports_every_attribute_and_the_rotation_average(signal) -> None:
    result = signal.data_signal(16)
    assert set(result) == {*ATTRIBUTE_NAMES, "shape, rotation-averaged"}
    assert all(v > 0 for v in result.values()), result
    # A background covers most pixels: changing it moves the image far more than changing the shape.
    assert result["background"] > 10 * result["shape"], result
