import numpy as np
import pytest

from training.llm.p2rec.categories import (
    CategoryConfig,
    balance,
    compare_targets,
    counts_targets,
    fit_categories,
    kl_rows,
    recency_targets,
    shown_targets,
    sweep_k,
    target_fit,
    teacher_targets,
)


@pytest.mark.parametrize("spherical", [False, True])
def test_kmeans_is_deterministic_and_covers_every_item(teacher_emb: np.ndarray, spherical: bool) -> None:
    cfg = CategoryConfig(k=4, spherical=spherical, seed=3)
    a, b = fit_categories(teacher_emb, cfg), fit_categories(teacher_emb, cfg)
    np.testing.assert_array_equal(a.category_of, b.category_of)
    assert a.category_of.shape == (teacher_emb.shape[0],)
    assert a.category_of[0] == -1
    assert ((a.category_of[1:] >= 0) & (a.category_of[1:] < 4)).all()
    # the toy table has 4 well-separated genres of 10 items: one cluster per genre
    genre = (np.arange(1, 41) - 1) // 10
    for g in range(4):
        assert len(set(a.category_of[1:][genre == g])) == 1
    assert balance(a.category_of, 4)["entropy"] == pytest.approx(1.0)


def test_kmeans_rejects_k_larger_than_catalogue(teacher_emb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="between 1"):
        fit_categories(teacher_emb, CategoryConfig(k=41))


def test_sweep_k_reports_each_k(teacher_emb: np.ndarray) -> None:
    rows = sweep_k(teacher_emb, [2, 4, 8])
    assert [r["k"] for r in rows] == [2, 4, 8]
    assert rows[0]["inertia"] > rows[1]["inertia"] >= rows[2]["inertia"]


def test_counts_target_matches_hand_computation() -> None:
    category_of = np.array([-1, 0, 0, 1, 2, 2])  # items 1..5
    train = [np.array([1, 2, 3]), np.array([4, 5, 5, 3]), np.array([], dtype=np.int64)]
    t = counts_targets(train, category_of, 3)
    np.testing.assert_allclose(t[0], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(t[1], [0, 1 / 4, 3 / 4])
    np.testing.assert_allclose(t[2], [1 / 3] * 3)  # empty history -> uniform
    np.testing.assert_allclose(t.sum(1), 1, rtol=1e-6)


def test_teacher_target_is_softmax_mass_per_category() -> None:
    category_of = np.array([-1, 0, 0, 1])
    scores = np.array([[100.0, 0.0, np.log(3.0), 0.0]])  # padding column must be ignored
    t = teacher_targets(
        [np.array([3])], category_of, 2, lambda h: np.repeat(scores, len(h), 0), mask_history=False
    )
    np.testing.assert_allclose(t[0], [4 / 5, 1 / 5], rtol=1e-6)
    masked = teacher_targets([np.array([3])], category_of, 2, lambda h: np.repeat(scores, len(h), 0))
    np.testing.assert_allclose(masked[0], [1.0, 0.0], atol=1e-7)  # item 3 is in the history
    hot = teacher_targets(
        [np.array([3])],
        category_of,
        2,
        lambda h: np.repeat(scores, len(h), 0),
        temperature=1e-3,
        mask_history=False,
    )
    np.testing.assert_allclose(hot.sum(1), 1, rtol=1e-6)


def test_compare_targets() -> None:
    a = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert compare_targets(a, a) == {"js_mean": pytest.approx(0.0, abs=1e-9), "top1_agreement": 1.0}
    b = np.array([[0.5, 0.5], [0.0, 1.0]])
    out = compare_targets(a, b)
    assert out["js_mean"] == pytest.approx(np.log(2) / 2)  # JS of disjoint one-hots is ln 2
    assert out["top1_agreement"] == 0.5


def test_shown_target_counts_only_the_items_the_prompt_lists() -> None:
    category_of = np.array([-1, 0, 0, 1, 2, 2])
    train = [np.array([1, 2, 3, 4]), np.array([5, 5])]
    t = shown_targets(train, category_of, 3, [2, 5])  # user 0's prompt shows items 3, 4; user 1's all
    np.testing.assert_allclose(t[0], [0, 1 / 2, 1 / 2])
    np.testing.assert_allclose(t[1], [0, 0, 1])


def test_recency_target_halves_the_weight_every_half_life() -> None:
    category_of = np.array([-1, 0, 1])
    t = recency_targets([np.array([1, 2])], category_of, 2, half_life=1.0)  # weights 0.5 (old), 1 (new)
    np.testing.assert_allclose(t[0], [1 / 3, 2 / 3])
    long = recency_targets([np.array([1] * 50 + [2] * 5)], category_of, 2, half_life=1.0)
    assert long[0, 1] > 0.95  # the whole history counts, but the newest items carry the mass
    with pytest.raises(ValueError, match="half-life"):
        recency_targets([np.array([1])], category_of, 2, half_life=0)


def test_target_fit_compares_against_no_llm_predictors() -> None:
    target = np.array([[0.9, 0.1], [0.2, 0.8]])
    prior = np.array([0.5, 0.5])
    fit = target_fit(target, target, prior, np.full((2, 2), 0.5), np.array([0, 1]))
    assert fit["kl"] == pytest.approx(0.0, abs=1e-9)
    assert fit["kl_prior"] == pytest.approx(float(kl_rows(target, np.full((2, 2), 0.5)).mean()))
    assert fit["next_nll"] == pytest.approx(-np.log([0.9, 0.8]).mean())
    assert fit["next_nll_prior"] == pytest.approx(np.log(2))
    assert fit["n_users"] == 2


def test_target_comparison_aligns_predictions_with_their_users(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from training.data.types import Split
    from training.llm.p2rec.config import P2RecConfig
    from training.llm.p2rec.pipeline import target_comparison

    rng = np.random.default_rng(0)
    n_users, k = 30, 4
    category_of = np.array([-1, 0, 1, 2, 3, 0, 1, 2, 3])
    train = [rng.integers(1, 9, size=6) for _ in range(n_users)]
    split = Split(train, train, rng.integers(1, 9, size=n_users), train, rng.integers(1, 9, size=n_users), 8)
    target = counts_targets(train, category_of, k)
    tgt, cat, a, e = (tmp_path / n for n in ("t", "c", "a", "e"))
    for d in (tgt, cat, a, e):
        d.mkdir()
    np.save(tgt / "targets_counts.npy", target)
    np.save(tgt / "targets_shown.npy", shown_targets(train, category_of, k, [3] * n_users))
    np.save(tgt / "n_shown.npy", np.full(n_users, 3))
    np.save(cat / "category_of.npy", category_of)
    np.save(a / "train_users.npy", np.arange(0, 20))
    np.save(a / "valid_users.npy", np.arange(20, 24))
    users = np.arange(20, 30)
    np.save(e / "users.npy", users)
    np.save(e / "pred.npy", target[users])  # a perfect stage (a), row for row
    fit = target_comparison(P2RecConfig(k=k), split, tgt, cat, {"counts": (a, e)})["counts"]
    assert fit["kl"] == pytest.approx(0.0, abs=1e-6) and fit["n_users"] == 10
    assert fit["epoch_picked_on"] == pytest.approx(0.4)
    np.save(e / "pred.npy", target[users][::-1])  # the same rows, given to the wrong users
    assert target_comparison(P2RecConfig(k=k), split, tgt, cat, {"counts": (a, e)})["counts"]["kl"] > 0.05
