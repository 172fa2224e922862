"""Training loop, batching and seeding for the sequential recommenders."""

from training.train.batching import left_pad, make_score_fn, training_windows
from training.train.trainer import TrainResult, fit_model, seed_everything

__all__ = ["TrainResult", "fit_model", "left_pad", "make_score_fn", "seed_everything", "training_windows"]
