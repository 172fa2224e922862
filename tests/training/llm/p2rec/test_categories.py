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
