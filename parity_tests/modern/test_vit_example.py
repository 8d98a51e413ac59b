"""``examples/train_vit.py`` (day 56): refusals before any work, and a tiny float64 run of the three
backends on one loss curve."""
import re

import pytest

from parity_tests.scripts import load_script, refusal

SCRIPT = "examples/train_vit.py"
#: A model small enough for a few seconds per backend: 4x4 patches, width 8, one layer, 5 steps of 256 images.
TINY = ["--patch-size", "4", "--hidden-size", "8", "--num-hidden-layers", "1", "--num-attention-heads", "2",
        "--intermediate-size", "8", "--epochs", "1", "--batch-size", "256"]


@pytest.fixture
def example(monkeypatch):
    """The example, with its data replaced by a failure: refusals come before the digits load."""
    module = load_script(SCRIPT)

    def no_data(*args, **kwargs):
        raise AssertionError("the digits were loaded before the arguments were checked")

    monkeypatch.setattr(module, "load_digits_split", no_data)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--patch-size", "3"], "argument --patch-size: ViTConfig: patch_size must divide image_size = 8, got 3"),
    (["--num-attention-heads", "5"],
     "argument --num-attention-heads: ViTConfig: num_attention_heads must divide hidden_size = 32, got 5"),
    (["--hidden-dropout-prob", "0.1"],
     "argument --hidden-dropout-prob: ViTConfig: hidden_dropout_prob must be 0.0 (this ViT has no dropout), got 0.1"),
    (["--plot", "x.png"], "--plot needs --compare"),
])
def test_example_refuses_bad_arguments_before_any_work(example, argv, message, capsys):
    assert message in refusal(example.main, argv, capsys)


def test_example_trains_three_backends_to_one_curve(capsys, tmp_path):
    plot = tmp_path / "vit.png"
    load_script(SCRIPT).main(["--compare", "--dtype", "float64", "--plot", str(plot)] + TINY)
    out = capsys.readouterr().out.strip().splitlines()
    difference = float(re.search(r"over 5 steps: (\S+)", out[-1]).group(1))
    assert difference < 1e-12
    accuracies = [float(re.search(r"test accuracy (\S+)", line).group(1)) for line in out
                  if re.match(r"(numpy|torch|tf) +final loss", line)]
    assert len(accuracies) == 3 and len(set(accuracies)) == 1
    assert plot.stat().st_size > 0


def test_example_single_backend_ends_with_the_accuracy(capsys):
    load_script(SCRIPT).main(["--backend", "torch"] + TINY)
    assert re.fullmatch(r"test accuracy: \d\.\d{3}", capsys.readouterr().out.strip().splitlines()[-1])
