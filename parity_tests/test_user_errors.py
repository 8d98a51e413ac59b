"""What a new user hits first: bad command-line values, a missing framework, start-up noise, the
install extras. Every refusal is one line on stderr, exit code 2, before any work is done."""
import importlib.util
import os
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from ml100 import cli
from ml100.backends import FrameworkNotInstalledError, drop_quiet_lines, get_backend, get_module
from ml100.curriculum import ROOT
from ml100.runs import report_comparison
from ml100.weights import save_weights
from parity_tests.scripts import load_script, refusal



@pytest.fixture(params=["train_mlp", "train_cnn"])
def example(request, monkeypatch):
    """Each training example, with its data loading replaced by a failure: a refusal must come first."""
    module = load_script(f"examples/{request.param}.py")

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the arguments were checked")

    monkeypatch.setattr(module, "load_digits_split", no_data)
    return module



@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
    (["--epochs", "-1"], "argument --epochs: expected an integer >= 1, got '-1'"),
    (["--epochs", "0", "--compare"], "argument --epochs: expected an integer >= 1"),
    (["--epochs", "2.5"], "argument --epochs: expected an integer, got '2.5'"),
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["--lr", "0"], "argument --lr: expected a finite number > 0, got '0'"),
    (["--lr", "-0.001"], "argument --lr: expected a finite number > 0"),
    (["--lr", "nan"], "argument --lr: expected a finite number > 0, got 'nan'"),
    (["--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
    (["--compare", "--backend", "torch"], "--compare trains every backend, so --backend torch would be ignored"),
    (["--plot", "curves.png"], "--plot needs --compare"),
    (["--compare", "--plot", "curves.txt"], "'curves.txt' needs one of matplotlib's extensions: "),
    (["--compare", "--plot", "curves"], "'curves' needs one of matplotlib's extensions"),
    (["--compare", "--plot", "no/such/folder/curves.png"], "folder 'no/such/folder' of 'no/such/folder/curves.png' does not exist"),
    (["--weights", "missing.safetensors"], "argument --weights: weights file missing.safetensors does not exist"),
])
def test_examples_refuse_bad_arguments_before_any_work(example, argv, message, capsys):
    assert message in refusal(example.main, argv, capsys)


def test_the_plot_extensions_are_matplotlibs(example, capsys):
    err = refusal(example.main, ["--compare", "--plot", "curves.txt"], capsys)
    assert all(f".{extension}," in err for extension in ("pdf", "png", "svg"))


@pytest.mark.parametrize("script, argv", [
    ("train_mlp", ["--hidden", "64", "0"]),
    ("train_cnn", ["--channels", "0", "0"]),
    ("train_cnn", ["--hidden", "0"]),
])
def test_examples_refuse_zero_widths(script, argv, capsys):
    # The model's flags may be checked by argparse or by the model's config: either names the flag and the rule.
    err = refusal(load_script(f"examples/{script}.py").main, argv, capsys)
    assert f"argument {argv[0]}: " in err and ">= 1" in err


def test_examples_refuse_a_weights_file_that_is_not_safetensors(example, tmp_path, capsys):
    path = tmp_path / "model.npz"
    np.savez(path, w=np.ones(3))
    err = refusal(example.main, ["--weights", str(path)], capsys)
    assert f"argument --weights: {path} is not a safetensors file: it looks like a zip archive" in err


def test_a_batch_larger_than_the_training_set_is_refused_before_any_framework(capsys):
    example = load_script("examples/train_mlp.py")
    err = refusal(example.main, ["--batch-size", "5000", "--backend", "tf"], capsys)
    assert "argument --batch-size: 5000 is more than the 1438 training examples" in err


def test_weights_that_do_not_fit_the_model_are_refused_before_training(tmp_path, capsys):
    path = tmp_path / "other.safetensors"
    save_weights(path, {"w": np.ones(3, dtype=np.float32)})
    err = refusal(load_script("examples/train_mlp.py").main, ["--weights", str(path)], capsys)
    assert "argument --weights: MLP.load_canonical_state_dict: missing keys: layers.0.bias" in err
    assert "unexpected keys: w" in err


def test_a_missing_framework_is_refused_with_its_extra(example, monkeypatch, capsys):
    # None in sys.modules makes Python treat the package as not installed.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    err = refusal(example.main, ["--backend", "tf"], capsys)
    assert "backend 'tf' needs tensorflow, which is not installed: pip install \"ml100[tf]\"" in err
    assert 'pip install "ml100[tf]"' in refusal(example.main, ["--compare"], capsys)


def test_the_cli_passes_the_refusal_through(monkeypatch, capsys):
    # `ml100 run` rewrites sys.argv for the example; the fixture restores it.
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    err = refusal(cli.main, ["run", "train_mlp", "--lr", "nan"], capsys)
    assert err.startswith("train_mlp.py: error: argument --lr: expected a finite number > 0, got 'nan'")


BENCHMARKS_WITH_REPEATS = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "benchmarks").glob("bench_*.py")
                                 if '"--repeats"' in path.read_text())


def test_every_benchmark_but_the_sampling_one_takes_repeats():
    # The sampler runs each chain once (minutes at T = 1000); the rest take the best of --repeats.
    assert len(BENCHMARKS_WITH_REPEATS) == len(list((ROOT / "benchmarks").glob("bench_*.py"))) - 1


@pytest.mark.parametrize("script", BENCHMARKS_WITH_REPEATS)
def test_benchmarks_refuse_bad_arguments(script, capsys):
    err = refusal(load_script(script).main, ["--repeats", "0"], capsys)
    assert "argument --repeats: expected an integer >= 1, got '0'" in err


def test_the_plot_is_written_where_it_says(tmp_path, capsys):
    path = tmp_path / "curves.svg"
    results = {"numpy": ([1.0, 0.5], 0.9), "torch": ([1.0, 0.5], 0.9)}
    report_comparison(results, "float64", path, "title")
    assert f"loss curves saved to {path}\n" in capsys.readouterr().out
    assert path.read_bytes().lstrip().startswith(b"<?xml")


def test_missing_framework_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(FrameworkNotInstalledError, match=r'backend \'torch\' needs torch, which is not installed: pip install "ml100\[torch\]"'):
        get_backend("torch")
    with pytest.raises(ModuleNotFoundError, match=r'pip install "ml100\[torch\]"'):
        get_module("torch", "foundations.mlp")


def test_a_tree_dependency_missing_names_the_extra(monkeypatch):
    def import_without_keras(name, package=None):
        raise ModuleNotFoundError("No module named 'keras'", name="keras")

    monkeypatch.setattr(importlib, "import_module", import_without_keras)
    with pytest.raises(FrameworkNotInstalledError, match=r'backend \'tf\' needs keras, which is not installed: pip install "ml100\[tf\]"'):
        get_module("tf", "foundations.mlp")


PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
INFO = "I0000 00:00:1795753767.633922    4579 port.cc:153] oneDNN custom operations are on.\n"
WARNING = "W0000 00:00:1795753767.635338    4579 some.cc:31] a warning\n"
ERROR = "E0000 00:00:1795753767.635338    4579 other.cc:31] an error\n"
PYTHON = "a line from Python\n"


@pytest.mark.parametrize("level, kept", [
    (3, PYTHON),
    (2, PREAMBLE + ERROR + PYTHON),
    (1, PREAMBLE + WARNING + ERROR + PYTHON),
    (0, PREAMBLE + INFO + WARNING + ERROR + PYTHON),
])
def test_tf_start_up_lines_below_the_log_level_are_dropped(level, kept):
    assert drop_quiet_lines(PREAMBLE + INFO + WARNING + ERROR + PYTHON, level) == kept


def quiet_env() -> dict[str, str]:
    """The environment a user has: none of the variables the test session sets to quiet TF and torch."""
    env = dict(os.environ)
    for name in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES"):
        env.pop(name, None)
    return env


def test_help_is_instant_and_quiet():
    # Runs the benchmark's --help, then reports whether a framework was imported on the way.
    code = ("import runpy, sys; sys.argv = ['bench_conv.py', '--help']\n"
            "try: runpy.run_path('benchmarks/bench_conv.py', run_name='__main__')\n"
            "except SystemExit: print(sorted({'torch', 'tensorflow'} & set(sys.modules)))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=quiet_env(), capture_output=True, text=True, timeout=60)
    assert run.stdout.startswith("usage: bench_conv.py") and run.stdout.rstrip().endswith("[]")
    assert run.stderr == ""


def test_loading_the_frameworks_prints_nothing():
    # TF first, as in the benchmarks: torch's first backward then warns about CUDA unless filtered.
    code = ("from ml100.backends import load_framework\n"
            "tf, torch = load_framework('tf'), load_framework('torch')\n"
            "x = torch.ones(2, requires_grad=True); (2 * x).sum().backward(); tf.constant(1.0) + 1")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=quiet_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_install_extras_split_the_frameworks():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    base = " ".join(project["project"]["dependencies"])
    extras = project["project"]["optional-dependencies"]
    assert not any(framework in base for framework in ("torch", "tensorflow", "keras", "transformers"))
    assert {"numpy", "torch", "tf", "all", "test"} <= set(extras)
    assert any(r.startswith("torch") for r in extras["torch"]) and any(r.startswith("tensorflow") for r in extras["tf"])
    assert "ml100[torch,tf]" in extras["all"]
    # pytest's own output options belong to the command line: -v must be verbose, -q must keep its summary.
    assert "addopts" not in project["tool"]["pytest"]["ini_options"]
    readme = (ROOT / "README.md").read_text()
    assert 'python -m pip install -e ".[all,test]"' in readme
