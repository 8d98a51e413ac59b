"""``examples/train_lora.py`` (days 64-65): refusals before any work, and a tiny float64 run of the
three backends — pre-training then LoRA fine-tuning trace one loss curve, the trainable count is
the adapters', and the last line reports the fine-tune validation loss before and after."""
import re

import pytest

from parity_tests.scripts import load_script, refusal

SCRIPT = "examples/train_lora.py"
#: A model and texts small enough for a few seconds per backend.
TINY = ["--corpus-chars", "3000", "--finetune-chars", "1500", "--vocab-size", "270", "--n-embd", "8", "--n-layer", "1",
        "--n-head", "2", "--n-positions", "16", "--seq-len", "8", "--batch-size", "8", "--epochs", "1",
        "--finetune-epochs", "1", "--r", "2"]


@pytest.fixture
def example(monkeypatch):
    """The example, with its texts replaced by a failure: refusals come before any text is read."""
    module = load_script(SCRIPT)

    def no_text(*args):
        raise AssertionError("a text was read before the arguments were checked")

    monkeypatch.setattr(module, "stdlib_corpus", no_text)
    monkeypatch.setattr(module, "module_docstrings", no_text)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--r", "0"], "argument --r: expected an integer >= 1, got '0'"),
    (["--lora-alpha", "0"], "argument --lora-alpha: expected a finite number > 0, got '0'"),
    (["--seq-len", "100"], "argument --seq-len: 100 tokens do not fit the position table (--n-positions 64)"),
    (["--target-modules", "q_proj"],
     "argument --target-modules: apply_lora: target_modules ['q_proj'] match no submodule"),
    (["--target-modules", "ln_1"], "argument --target-modules: apply_lora: transformer.h.0.ln_1: base_layer must be a "
                                   "Linear or Conv1D, got LayerNorm"),
    (["--plot", "x.png"], "--plot needs --compare"),
])
def test_example_refuses_bad_arguments_before_any_work(example, argv, message, capsys):
    assert message in refusal(example.main, argv, capsys)


def test_example_fine_tunes_three_backends_to_one_curve(capsys):
    load_script(SCRIPT).main(["--compare", "--dtype", "float64"] + TINY)
    out = capsys.readouterr().out.strip().splitlines()
    difference = float(re.search(r"over \d+ steps: (\S+)", out[-2]).group(1))
    assert difference < 1e-12
    # One block's c_attn (8 -> 24) with r = 2: 2 * (8 + 24) adapter parameters train.
    assert "trainable: 64 of " in out[-3]
    reports = [line.split(": ", 1)[1] for line in out if line.startswith("--- ")]
    assert len(reports) == 3 and len(set(reports)) == 1
    assert re.fullmatch(r"fine-tune validation loss: before \d+\.\d{4}, after \d+\.\d{4}", out[-1])
