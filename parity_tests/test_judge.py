"""The sample judge (ml100/judge.py): trained once per session (~10 s), right on real digits, refusing
samples outside its input range, the same weights from the same seed."""
import numpy as np
import pytest

from ml100 import judge
from ml100.data import load_digits_split


@pytest.fixture(scope="module")
def test_digits():
    return load_digits_split(layout="NCHW", dtype="float32")


def test_the_judge_recognizes_real_held_out_digits(test_digits):
    trained = judge.get_judge()
    assert trained.test_accuracy >= 0.95
    # judge_accuracy on the real digits with their true labels is that same held-out accuracy.
    assert judge.judge_accuracy(test_digits.x_test, test_digits.y_test) == pytest.approx(trained.test_accuracy)
    assert judge.get_judge() is trained, "the judge is trained once per process"


def test_labels_that_were_not_asked_for_score_low(test_digits):
    # A generator that ignores its label: the requested class is another one.
    wrong = (test_digits.y_test + 1) % judge.NUM_CLASSES
    assert judge.judge_accuracy(test_digits.x_test, wrong) < 0.1


def test_class_histogram_counts_every_image_once_per_class(test_digits):
    counts = judge.class_histogram(test_digits.x_test)
    assert counts.dtype == np.int64 and counts.shape == (judge.NUM_CLASSES,)
    assert counts.sum() == len(test_digits.x_test)
    # The real test digits are roughly balanced; a judge at >= 95 % sees each class within a few.
    np.testing.assert_allclose(counts, np.bincount(test_digits.y_test, minlength=10), atol=6)
    # Mode collapse shows: ten copies of one digit fill one bin.
    collapsed = judge.class_histogram(np.repeat(test_digits.x_test[:1], 10, axis=0))
    assert sorted(collapsed.tolist()) == [0] * 9 + [10]
    assert judge.format_histogram(collapsed).startswith("class histogram: 0:")


def test_signed_samples_and_logits_map_onto_the_pixel_range(test_digits):
    pixels = test_digits.x_test[:5].astype(np.float64)  # (5, 1, 8, 8)
    np.testing.assert_allclose(judge.from_signed(2.0 * pixels - 1.0), pixels, rtol=0, atol=1e-15)
    # A diffusion sample that overshoots [-1, 1] is clipped onto it.
    assert judge.from_signed(np.array([-1.3, 1.2])).tolist() == [0.0, 1.0]
    logits = np.array([-800.0, -2.0, 0.0, 2.0, 800.0])
    np.testing.assert_allclose(judge.from_logits(logits), [0.0, 1 / (1 + np.exp(2.0)), 0.5, 1 / (1 + np.exp(-2.0)), 1.0],
                               rtol=1e-15, atol=0)


def test_the_same_seed_trains_the_same_judge():
    first, second = judge.train_judge(epochs=1), judge.train_judge(epochs=1)
    for (name, a), (_, b) in zip(first.model.named_parameters(), second.model.named_parameters()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert first.test_accuracy == second.test_accuracy


@pytest.mark.parametrize("images, message", [
    (np.zeros((3, 8, 8, 1), np.float32), r"shape \(N, 1, 8, 8\) \(channels first"),
    (np.zeros((3, 64), np.float32), r"shape \(N, 1, 8, 8\)"),
    (np.full((3, 1, 8, 8), -0.5, np.float32), r"in \[0, 1\] \(map \[-1, 1\] samples with from_signed"),
    (np.full((3, 1, 8, 8), 1.5, np.float32), r"got values in \[1.5, 1.5\]"),
    (np.full((3, 1, 8, 8), np.nan, np.float32), "must be finite pixels"),
])
def test_images_outside_the_judges_input_are_refused(images, message):
    with pytest.raises(ValueError, match=message):
        judge.class_histogram(images)


def test_non_float_images_are_refused():
    with pytest.raises(TypeError, match="must be a NumPy float array"):
        judge.class_histogram(np.zeros((3, 1, 8, 8), np.int64))


@pytest.mark.parametrize("labels, message", [
    (np.zeros(4, np.int32), r"int64 of shape \(4,\)"),
    (np.zeros(3, np.int64), r"int64 of shape \(4,\) \(one per image\), got int64 of shape \(3,\)"),
    (np.full(4, 10, np.int64), r"in \[0, 10\), got values in \[10, 10\]"),
])
def test_bad_requested_labels_are_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        judge.judge_accuracy(np.zeros((4, 1, 8, 8), np.float32), labels)


def test_an_empty_sample_has_no_accuracy():
    with pytest.raises(ValueError, match="no images to judge"):
        judge.judge_accuracy(np.zeros((0, 1, 8, 8), np.float32), np.zeros(0, np.int64))
