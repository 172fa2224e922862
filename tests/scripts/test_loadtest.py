from scripts.loadtest import rotations


def test_rotations_put_every_server_in_every_place() -> None:
    orders = rotations(["bare", "service", "auth"], 6)
    assert orders[:3] == [["bare", "service", "auth"], ["service", "auth", "bare"], ["auth", "bare", "service"]]
    assert orders[3:] == orders[:3]
    for place in range(3):  # over each full cycle every server runs once in each place
        assert sorted(order[place] for order in orders[:3]) == ["auth", "bare", "service"]


def test_rotations_of_fewer_rounds_than_servers() -> None:
    assert rotations(["a", "b", "c"], 2) == [["a", "b", "c"], ["b", "c", "a"]]
    assert rotations(["a"], 3) == [["a"], ["a"], ["a"]]


def test_machine_names_the_cpu_and_torchs_vector_instructions(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    import torch

    from scripts import loadtest

    monkeypatch.setattr(loadtest, "_cpuinfo", lambda: ["processor\t: 0", "model name\t: Test CPU 9000", "flags\t: fpu"])
    line = loadtest.machine()
    assert "Test CPU 9000" in line and f"{os.cpu_count()} CPUs" in line
    assert line.endswith(f"with {torch.backends.cpu.get_cpu_capability()}")
    monkeypatch.setattr(loadtest, "_cpuinfo", list)  # no /proc/cpuinfo (not Linux)
    assert " ?, " in loadtest.machine()


def test_the_auth_report_says_which_machine_ran_it() -> None:
    from scripts.loadtest import _auth_markdown

    run = {"rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}
    report = {"command": "python scripts/loadtest.py bench --auth", "concurrency": 32, "duration_s": 8, "bodies": 3,
              "rounds": 1, "order_per_round": [["a"]], "load_average": [1.0, 1.0, 1.0], "bare_fastapi": run,
              "service_no_explain": run, "service_auth_ratelimit": run, "throughput_ratio": 1.0,
              "auth_throughput_ratio": 1.0, "auth_ratio_per_round": [1.0], "auth_ratio_paired_median": 1.0}
    assert "Machine:" not in _auth_markdown(report)  # reports written before the field keep rendering
    assert "Machine: x86_64 Test CPU, 2 CPUs. " in _auth_markdown({**report, "machine": "x86_64 Test CPU, 2 CPUs"})
