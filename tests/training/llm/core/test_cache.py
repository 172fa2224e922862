import contextlib
from pathlib import Path

import numpy as np

from training.llm.core.cache import cached, fingerprint


def test_second_call_resumes_without_recomputing(tmp_path: Path) -> None:
    calls: list[Path] = []

    def compute(d: Path) -> None:
        calls.append(d)
        np.save(d / "x.npy", np.arange(3))

    def load(d: Path) -> np.ndarray:
        return np.load(d / "x.npy")

    a, da = cached("s", {"k": 1}, "in1", tmp_path, compute, load)
    b, db = cached("s", {"k": 1}, "in1", tmp_path, compute, load)
    assert len(calls) == 1 and da == db and (a == b).all()
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "s").iterdir())
    cached("s", {"k": 2}, "in1", tmp_path, compute, load)  # config changed
    cached("s", {"k": 1}, "in2", tmp_path, compute, load)  # inputs changed
    assert len(calls) == 3


def test_a_crashed_stage_is_recomputed(tmp_path: Path) -> None:
    def boom(d: Path) -> None:
        (d / "half").write_text("x")
        raise RuntimeError("crash")

    with contextlib.suppress(RuntimeError):
        cached("s", {}, "i", tmp_path, boom, lambda d: None)
    value, _ = cached(
        "s", {}, "i", tmp_path, lambda d: (d / "ok").write_text("1"), lambda d: (d / "ok").read_text()
    )
    assert value == "1"


def test_fingerprint_sees_array_content() -> None:
    a = [np.array([1, 2]), np.array([3])]
    assert fingerprint(a) == fingerprint([x.copy() for x in a])
    assert fingerprint(a) != fingerprint([np.array([1, 2]), np.array([4])])
