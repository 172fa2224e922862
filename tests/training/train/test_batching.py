import numpy as np
import pytest

from training.train import left_pad, training_windows


def test_left_pad_keeps_the_newest_items() -> None:
    out = left_pad([np.array([1, 2, 3, 4, 5]), np.array([7]), np.array([], dtype=np.int64)], 3)
    assert out.tolist() == [[3, 4, 5], [0, 0, 7], [0, 0, 0]]


@pytest.mark.parametrize(
    ("mode", "inputs", "targets"),
    [
        ("last", [[3, 4, 5]], [[4, 5, 6]]),
        # newest-aligned windows overlapping by one item: every event after the first is a target once
        ("sliding", [[3, 4, 5], [0, 1, 2]], [[4, 5, 6], [0, 2, 3]]),
    ],
)
def test_training_windows(mode: str, inputs: list[list[int]], targets: list[list[int]]) -> None:
    x, y = training_windows([np.array([1, 2, 3, 4, 5, 6]), np.array([9])], max_len=3, mode=mode)
    assert x.tolist() == inputs
    assert y.tolist() == targets


def test_training_windows_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError):
        training_windows([np.array([1, 2, 3])], 2, "random")
