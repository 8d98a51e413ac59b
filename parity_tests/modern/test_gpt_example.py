"""``examples/train_gpt.py`` (days 48-51 together): refusals before any work, a tiny float64 run of
the three backends (one loss curve, the same samples through day 50's decoding and day 51's KV
cache), and ``--save`` then ``--generate`` giving back the samples of the training run."""
import re

import pytest

from parity_tests.scripts import load_script, refusal

SCRIPT = "examples/train_gpt.py"
#: A model and corpus small enough for a few seconds per backend.
TINY = ["--corpus-chars", "4000", "--vocab-size", "280", "--n-embd", "8", "--n-layer", "1", "--n-head", "2",
        "--n-positions", "24", "--seq-len", "8", "--batch-size", "4", "--epochs", "1", "--sample-length", "6"]


@pytest.fixture
def example(monkeypatch):
    """The example, with its corpus replaced by a failure: refusals come before any work."""
    module = load_script(SCRIPT)

    def no_corpus():
        raise AssertionError("the corpus was read before the arguments were checked")

    monkeypatch.setattr(module, "stdlib_corpus", no_corpus)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--n-embd", "0"], "argument --n-embd: expected an integer >= 1, got '0'"),
    (["--seq-len", "200"], "argument --seq-len: 200 tokens do not fit the position table (--n-positions 128)"),
    (["--n-head", "3"], "argument --n-head: "),
    (["--resid-pdrop", "0.1"], "unrecognized arguments: --resid-pdrop 0.1"),
    (["--sample-length", "0"], "argument --sample-length: expected an integer >= 1, got '0'"),
    (["--save", "weights.bin"], "argument --save: expected a .safetensors file name, got 'weights.bin'"),
    (["--save", "no/such/folder/w.safetensors"], "argument --save: folder 'no/such/folder' does not exist"),
    (["--compare", "--save", "w.safetensors"], "--save writes one backend's weights: give --backend instead of --compare"),
    (["--prompt", ""], "argument --prompt: a prompt must hold at least one character"),
])
def test_example_refuses_bad_arguments_before_any_work(example, argv, message, capsys):
    assert message in refusal(example.main, argv, capsys)


def test_example_refuses_a_sample_longer_than_the_position_table(capsys):
    assert "argument --sample-length: a prompt of" in refusal(load_script(SCRIPT).main, TINY + ["--sample-length", "30"], capsys)


def samples_of(lines: list[str]) -> list[str]:
    """The printed samples: each a Python repr, in single quotes or (holding one) double quotes."""
    return [line for line in lines if line[:1] in ("'", '"')]


def test_example_trains_three_backends_to_one_curve(capsys):
    """A tiny float64 run of all three backends: one loss curve, the same samples, the last line."""
    load_script(SCRIPT).main(["--compare", "--dtype", "float64"] + TINY)
    out = capsys.readouterr().out.strip().splitlines()
    difference = float(re.search(r"over \d+ steps: (\S+)", out[-2]).group(1))
    assert difference < 1e-12
    samples = samples_of(out)
    assert len(samples) == 9 and samples[0:3] == samples[3:6] == samples[6:9]
    assert re.fullmatch(r"validation loss: \d+\.\d{4}", out[-1])


def test_saved_weights_generate_the_training_runs_samples(tmp_path, capsys):
    """``--save`` then ``--generate``: the loaded weights, the same BPE and the same uniforms give the
    samples the training run printed, in the other two backends too (float64)."""
    path = str(tmp_path / "gpt.safetensors")
    main = load_script(SCRIPT).main
    main(["--backend", "torch", "--dtype", "float64", "--save", path] + TINY)
    trained = samples_of(capsys.readouterr().out.splitlines())
    assert len(trained) == 3
    for backend in ("numpy", "tf"):
        main(["--backend", backend, "--dtype", "float64", "--generate", path] + TINY)
        assert samples_of(capsys.readouterr().out.splitlines()) == trained, backend
