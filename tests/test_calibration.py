"""Label priors and temperature scaling, on constructed cases where the right answer is known."""

import numpy as np
import pytest

from speechacts import calibration
from speechacts.calibration import PostProcess
from speechacts.errors import ModelError
from speechacts.labels import LABELS

TRUE_MIX = np.array([0.05, 0.1, 0.15, 0.1, 0.6])  # threat, demand, denial, offer, assessment


def gaussian_world(n, mix, seed=0, spacing=1.0):
    """Each label draws a 1-D score from N(spacing x label index, 1): the posteriors under a
    uniform prior are exact, so the right adjustment for a batch drawn with `mix` is known."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(LABELS), size=n, p=mix)
    x = rng.normal(spacing * y, 1.0)
    likelihood = np.exp(-0.5 * (x[:, None] - spacing * np.arange(len(LABELS))[None, :]) ** 2)
    uniform_posterior = likelihood / likelihood.sum(axis=1, keepdims=True)
    return uniform_posterior, [LABELS[i] for i in y], likelihood


def accuracy(proba, labels):
    return float(np.mean([LABELS[i] == t for i, t in zip(proba.argmax(axis=1), labels)]))


def test_known_prior_gives_the_bayes_posterior():
    proba, labels, likelihood = gaussian_world(4000, TRUE_MIX)
    adjusted = calibration.adjust_prior(proba, TRUE_MIX, calibration.uniform())
    bayes = likelihood * TRUE_MIX / (likelihood * TRUE_MIX).sum(axis=1, keepdims=True)
    assert np.allclose(adjusted, bayes)
    assert accuracy(adjusted, labels) > accuracy(proba, labels) + 0.05


def test_em_recovers_the_label_mix_of_a_batch():
    proba, labels, _ = gaussian_world(5000, TRUE_MIX, seed=1, spacing=1.5)
    estimate = calibration.em_prior(proba, calibration.uniform())
    assert np.abs(estimate - TRUE_MIX).max() < 0.03
    assert estimate.sum() == pytest.approx(1.0)
    post = PostProcess(prior_method="em")
    assert accuracy(post(proba), labels) > accuracy(proba, labels) + 0.03


def test_a_tiny_batch_is_not_adjusted_by_em():
    proba, _, _ = gaussian_world(3, TRUE_MIX)
    assert np.allclose(PostProcess(prior_method="em").adjust(proba), proba)


def test_temperature_scaling_lowers_the_calibration_error_of_an_overconfident_model():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1.0, size=(5000, len(LABELS)))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = [LABELS[rng.choice(len(LABELS), p=p)] for p in truth]
    overconfident = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)
    before = calibration.expected_calibration_error(overconfident, labels)
    t = calibration.fit_temperature(overconfident, labels)
    after = calibration.expected_calibration_error(calibration.apply_temperature(overconfident, t), labels)
    assert t == pytest.approx(3.0, rel=0.15)
    assert before > 0.15 and after < 0.03
    # the label never changes
    assert (calibration.apply_temperature(overconfident, t).argmax(axis=1) == overconfident.argmax(axis=1)).all()


def test_coverage_falls_and_accuracy_rises_with_the_threshold():
    proba, labels, _ = gaussian_world(3000, TRUE_MIX, seed=3)
    curve = calibration.coverage_curve(proba, labels, thresholds=[0.2, 0.5, 0.8])
    assert [round(c["coverage"], 6) for c in curve] == sorted((round(c["coverage"], 6) for c in curve), reverse=True)
    assert curve[0]["coverage"] == 1.0 and curve[2]["accuracy"] > curve[0]["accuracy"]


def test_post_processing_round_trips_and_refuses_bad_values(tmp_path):
    post = PostProcess(prior_method="articles", target_prior=TRUE_MIX.tolist(), temperature=1.7)
    post.save(tmp_path)
    assert PostProcess.load(tmp_path) == post
    assert PostProcess.load(tmp_path / "missing") == PostProcess()  # a model saved without one: identity
    with pytest.raises(ModelError, match="prior method 'bayes' is not one of none, articles, em"):
        PostProcess(prior_method="bayes")
    with pytest.raises(ModelError, match="temperature must be positive, got 0"):
        PostProcess(temperature=0)
    with pytest.raises(ModelError, match="target_prior must hold 5 positive numbers in label order"):
        PostProcess(target_prior=[0.5, 0.5])
    (tmp_path / calibration.FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="postprocess.json: unreadable post-processing"):
        PostProcess.load(tmp_path)
