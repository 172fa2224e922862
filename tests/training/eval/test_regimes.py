import numpy as np

from tests.training.eval.conftest import make_split, random_split
from training.eval.protocols import evaluate_all
from training.eval.regimes import REGIMES, head_items, regime_metrics, regime_users, train_popularity


def test_regimes_select_the_users_they_name() -> None:
    # item 1 is in every training sequence (the head); item 9 never is (cold)
    split = make_split(
        [[1, 2, 3, 4, 5, 6, 7, 8, 2, 7], [1, 3, 4, 8, 6, 8], [1, 2, 3, 5, 4, 9], [1, 4, 6, 7, 2, 1], [1, 2, 5, 3, 3]],
        n_items=9,
    )
    pop = train_popularity(split)
    assert pop[0] == 0 and pop[1] == 5 and pop[9] == 0
    head = head_items(pop, 0.2)  # round(0.2 * 9) = 2 items: 1 and the most popular of the rest (2, by id)
    assert np.flatnonzero(head).tolist() == [1, 2]
    users = regime_users(split)
    assert set(users) == set(REGIMES)
    assert users["all"].tolist() == [0, 1, 2, 3, 4]
    assert users["cold"].tolist() == [2]  # target 9
    assert users["long_tail"].tolist() == [0, 1, 2, 4]  # user 3's target is item 1
    assert users["short_history"].tolist() == [1, 2, 3, 4]  # training lengths 8, 4, 4, 4, 3 -> quantile 4


def test_regime_metrics_equal_the_protocols_on_those_users() -> None:
    split = random_split(n_users=40, n_items=200, min_len=5, max_len=30, seed=3)
    rng = np.random.default_rng(0)
    table = rng.normal(size=(201, 8))

    def score_fn(histories: list[np.ndarray]) -> np.ndarray:
        return np.stack([table[h].mean(0) @ table.T for h in histories])

    protocols = ["full", "sampled100", "cand20"]
    got = regime_metrics(score_fn, split, protocols)
    for name, users in regime_users(split).items():
        assert got[name]["n_users"] == len(users)
        if len(users):
            want = evaluate_all(score_fn, split, protocols, "test", users=users)
            for p in protocols:
                for metric, value in want[p].items():
                    if metric != "mask_history":
                        assert got[name][p][metric] == value
        else:
            assert set(got[name]) == {"n_users"}


def test_a_cold_split_masks_the_held_out_items_a_user_consumed() -> None:
    from training.eval.protocols import build_candidates, ranks_by_protocol

    split = make_split([[1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 7, 8]] + [[3, 4, 5, 6, 2, 1]] * 3, n_items=150)
    split.unseen_items = np.array([9, 10])
    split.test_hidden = [np.array([9]), np.array([10])] + [np.zeros(0, dtype=np.int64)] * 3
    split.test_target[0] = 10  # user 0 asks for a held-out item after consuming the other one
    assert regime_users(split)["cold"].tolist() == [0]
    cands = build_candidates(split, "sampled100", "test")
    assert 9 not in cands[0] and 10 not in cands[1, 1:]

    def prefer_hidden(histories: list[np.ndarray]) -> np.ndarray:
        scores = np.zeros((len(histories), 151))
        scores[:, 9] = 10.0  # what user 0 consumed, hidden from their history
        scores[:, 10] = 5.0  # user 0's target
        return scores

    ranks = ranks_by_protocol(prefer_hidden, split, ["full"], "test")["full"]
    assert ranks[0] == 0  # item 9 is masked, so the target comes first
