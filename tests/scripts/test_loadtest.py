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
