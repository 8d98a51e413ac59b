"""``examples/capstone_digits.py`` (day 70): refusals before any work, and a tiny float64 run of the four
models on the three backends, whose accuracies agree across backends and whose parameter counts are the
models' own."""
import re

import numpy as np
import pytest

from ml100.backends import get_module
from parity_tests.scripts import load_script, refusal

SCRIPT = "examples/capstone_digits.py"
#: One step of the whole training set per model and backend: seconds, not minutes.
TINY = ["--dtype", "float64", "--epochs", "1", "--batch-size", "1437"]
ROW = re.compile(r"(mlp|cnn|vit|mixer) +(numpy|torch|tf) +([\d,]+) +(\d\.\d{3}) +(\d+\.\d)$")


@pytest.fixture
def example(monkeypatch):
    """The capstone, with its data replaced by a failure: refusals come before the digits load."""
    module = load_script(SCRIPT)

    def no_data(*args, **kwargs):
        raise AssertionError("the digits were loaded before the arguments were checked")

    monkeypatch.setattr(module, "load_digits_split", no_data)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--backend", "torch", "--all-backends"],
     "--all-backends trains every backend, so --backend torch would be ignored: give one or the other"),
    (["--models", "cnn", "cnn"], "argument --models: each model once, got cnn cnn"),
    (["--models", "resnet"], "argument --models: invalid choice: 'resnet'"),
    (["--epochs", "0"], "argument --epochs"),
    (["--plot", "capstone.nope"], "argument --plot"),
])
def test_capstone_refuses_bad_arguments_before_any_work(example, argv, message, capsys):
    assert message in refusal(example.main, argv, capsys)


def test_capstone_tiny_run_agrees_across_backends(capsys, tmp_path):
    plot = tmp_path / "capstone.png"
    load_script(SCRIPT).main(["--all-backends", "--plot", str(plot)] + TINY)
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [ROW.match(line).groups() for line in lines if ROW.match(line)]
    assert len(rows) == 12
    # float64 and the same weights and batches: each model's three backends reach one accuracy.
    for model in ("mlp", "cnn", "vit", "mixer"):
        accuracies = {accuracy for name, _, _, accuracy, _ in rows if name == model}
        assert len(accuracies) == 1, (model, accuracies)
    parameters = {name: int(count.replace(",", "")) for name, _, count, _, _ in rows}
    mixer = get_module("numpy", "modern.mlp_mixer").MlpMixer(load_script(SCRIPT).MIXER)
    assert parameters["mixer"] == sum(value.size for value in mixer.canonical_state_dict().values())
    # Day 7's MLP with one hidden layer of 128: 64*128 + 128 + 128*10 + 10.
    assert parameters["mlp"] == 9610
    assert re.fullmatch(r"best test accuracy: \d\.\d{3} \((mlp|cnn|vit|mixer), (numpy|torch|tf)\)", lines[-1])
    assert plot.stat().st_size > 0
    assert np.isfinite([float(row[3]) for row in rows]).all()
