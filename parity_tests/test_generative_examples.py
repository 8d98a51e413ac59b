"""The generative examples (examples/train_vae.py, train_gan.py, train_diffusion.py): bad arguments
refused before any work, three backends tracing one loss curve (both players' for the GAN) in a
tiny float64 run, the judge's lines at the end, the sample grid written."""
import re

import pytest

from parity_tests.harness import TOLERANCES
from parity_tests.scripts import load_script, refusal

SCRIPTS = ("train_vae", "train_gan", "train_diffusion")
#: Two steps per epoch (1437 training digits), few samples, few sampling steps: seconds per backend.
TINY = ["--epochs", "1", "--batch-size", "512", "--samples", "20"]
TINY_DIFFUSION = ["--train-timesteps", "50", "--ddim-steps", "3", "--channels", "4", "8", "--groups", "2", "--time-embed-dim", "8"]
DIFFERENCE = re.compile(r"largest (?:(\w+) )?loss difference between backends.*\(relative ([0-9.e+-]+), float64\)")


def tiny(script: str) -> list[str]:
    return TINY + (TINY_DIFFUSION if script == "train_diffusion" else [])


@pytest.fixture
def no_data(monkeypatch):
    """Load a script with its data loading replaced by a failure: a refusal must come first."""
    def load(script: str):
        module = load_script(f"examples/{script}.py")

        def fail(*args, **kwargs):
            raise AssertionError("the data was loaded before the arguments were checked")

        monkeypatch.setattr(module, "load_digits_split", fail)
        return module
    return load


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("argv, message", [
    (["--samples", "0"], "argument --samples: expected an integer >= 1, got '0'"),
    (["--plot", "grid.png", "--samples", "50"], "argument --plot: the sample grid shows 100 samples, but --samples is 50"),
    (["--compare", "--backend", "tf"], "--compare trains every backend, so --backend tf would be ignored"),
    (["--lr", "nan"], "argument --lr: expected a finite number > 0, got 'nan'"),
])
def test_every_example_refuses_bad_arguments_before_any_work(no_data, script, argv, message, capsys):
    err = refusal(no_data(script).main, argv, capsys)
    assert message in err, err


@pytest.mark.parametrize("script, argv, message", [
    ("train_vae", ["--latent-dim", "0"], "argument --latent-dim"),
    ("train_gan", ["--hidden-sizes", "64", "0"], "argument --hidden-sizes"),
    ("train_diffusion", ["--ddim-steps", "60", "--train-timesteps", "50"], "argument --ddim-steps: 60 is more than --train-timesteps 50"),
    ("train_diffusion", ["--label-dropout", "1"], "argument --label-dropout: expected a number in [0, 1), got '1'"),
    ("train_diffusion", ["--label-dropout", "nan"], "argument --label-dropout: expected a number in [0, 1), got 'nan'"),
    ("train_diffusion", ["--guidance-scale", "0"], "argument --guidance-scale: expected a finite number > 0"),
    ("train_diffusion", ["--groups", "3"], "groups"),
])
def test_script_options_are_refused_before_any_work(no_data, script, argv, message, capsys):
    err = refusal(no_data(script).main, argv, capsys)
    assert message in err, err


@pytest.mark.parametrize("script", SCRIPTS)
def test_three_backends_trace_one_loss_curve_in_float64(script, capsys):
    assert load_script(f"examples/{script}.py").main(["--compare", "--dtype", "float64", *tiny(script)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    differences = {match[1] or "first": float(match[2]) for match in map(DIFFERENCE.search, lines) if match}
    # The GAN compares both players' curves; the others their one loss.
    assert len(differences) == (2 if script == "train_gan" else 1), lines
    assert max(differences.values()) <= TOLERANCES["float64"], differences
    assert sum(line.startswith(f"{backend:5s} class histogram: ") for backend in ("numpy", "torch", "tf") for line in lines) == 3
    assert re.fullmatch(r"judge accuracy: [01]\.\d{3}", lines[-1]), lines[-1]


@pytest.mark.parametrize("script", ["train_vae", "train_gan"])
def test_unconditional_variant_ends_with_the_class_histogram(script, capsys):
    assert load_script(f"examples/{script}.py").main(["--unconditional", *tiny(script)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    counts = [int(count) for count in re.fullmatch(r"class histogram: ((?:\d:\d+ ?){10})", last)[1].replace(":", " ").split()[1::2]]
    assert sum(counts) == 20, last


def test_unconditional_diffusion_samples_without_guidance(capsys):
    argv = ["--unconditional", *tiny("train_diffusion")]
    assert load_script("examples/train_diffusion.py").main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("class histogram: ")


def test_the_sample_grid_is_written_one_row_per_class(tmp_path, capsys):
    path = tmp_path / "grid.png"
    argv = ["--epochs", "1", "--batch-size", "512", "--samples", "100", "--plot", str(path)]
    assert load_script("examples/train_vae.py").main(argv) == 0
    out = capsys.readouterr().out
    assert f"sample grid saved to {path}" in out and path.stat().st_size > 0
    assert re.fullmatch(r"judge accuracy: [01]\.\d{3}", out.strip().splitlines()[-1])
