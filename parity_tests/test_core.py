"""The neutral package: backend selection, data, the command line, and the harness itself."""
import numpy as np
import pytest

from ml100 import cli
from ml100.backends import BACKENDS, NotBuiltYetError, get_backend, get_module
from ml100.curriculum import DAYS, status
from ml100.data import batch_indices, load_digits_split
from parity_tests.harness import Case, Result, compare_results, gradcheck_numpy


def test_backends_resolve_to_their_trees():
    assert {name: get_backend(name).__name__ for name in BACKENDS} == {"numpy": "numpy_impl", "torch": "torch_impl", "tf": "tf_impl"}


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'jax'; expected one of: numpy, torch, tf"):
        get_backend("jax")
    with pytest.raises(ValueError, match="unknown backend 'pytorch'"):
        get_module("pytorch", "foundations.mlp")


def test_a_module_not_built_yet_names_its_curriculum_day():
    with pytest.raises(NotBuiltYetError, match=r"numpy_impl.analysis.attention_maps is not built yet \(day 92: Attention heatmaps "):
        get_module("numpy", "analysis.attention_maps")
    # A module shared by several days names them all.
    with pytest.raises(NotBuiltYetError, match=r"tf_impl.optimization.flash_attention is not built yet \(day 77: .*; day 78: "):
        get_module("tf", "optimization.flash_attention")
    # A neutral topic is not looked for in the trees: the message names where it lives.
    with pytest.raises(NotBuiltYetError, match=r"torch_impl.modern.bpe does not exist: day 48: .* lives once in ml100.bpe"):
        get_module("torch", "modern.bpe")
    with pytest.raises(NotBuiltYetError, match="torch_impl has no module 'foundations.nope', and no curriculum day uses that path"):
        get_module("torch", "foundations.nope")


@pytest.mark.parametrize("missing", ["ml100_no_such_dependency", "numpy_impl.foundations.no_such_module"])
def test_an_import_error_inside_a_module_propagates_unchanged(missing, tmp_path, monkeypatch):
    import numpy_impl.foundations

    # A module that exists (in a folder added to the package's search path) but imports something missing.
    (tmp_path / "user_errors_broken.py").write_text(f"import {missing}\n")
    monkeypatch.setattr(numpy_impl.foundations, "__path__", [*numpy_impl.foundations.__path__, str(tmp_path)])
    with pytest.raises(ModuleNotFoundError) as error:
        get_module("numpy", "foundations.user_errors_broken")
    assert type(error.value) is ModuleNotFoundError and error.value.name == missing
    assert str(error.value) == f"No module named '{missing}'"


def test_digits_split_is_seeded_and_laid_out():
    a, b = load_digits_split(seed=3), load_digits_split(seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (1438, 64) and a.x_test.shape == (359, 64) and a.x_train.dtype == np.float32
    assert a.y_train.dtype == np.int64 and set(np.unique(a.y_test)) == set(range(10))
    assert 0.0 <= a.x_train.min() and a.x_train.max() == 1.0
    nchw, nhwc = load_digits_split("NCHW", "float64"), load_digits_split("NHWC")
    assert nchw.x_train.shape == (1438, 1, 8, 8) and nchw.x_train.dtype == np.float64
    np.testing.assert_array_equal(nhwc.x_test[..., 0], nchw.x_test[:, 0].astype(np.float32))
    assert not np.array_equal(load_digits_split(seed=4).y_train, a.y_train)


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="layout must be one of"):
        load_digits_split("CHW")
    with pytest.raises(TypeError, match="dtype must be one of"):
        load_digits_split(dtype="int8")


def test_batch_indices_cover_an_epoch_once():
    batches = list(batch_indices(10, 3, np.random.default_rng(0)))
    assert [len(b) for b in batches] == [3, 3, 3]
    assert len(set(np.concatenate(batches))) == 9
    assert [len(b) for b in batch_indices(10, 3, np.random.default_rng(0), drop_last=False)] == [3, 3, 3, 1]
    with pytest.raises(ValueError, match="batch_size must be in"):
        list(batch_indices(10, 0, np.random.default_rng(0)))


def test_curriculum_has_100_days_and_status_reads_the_trees():
    assert [d.number for d in DAYS] == list(range(1, 101))
    done = {day.number for day, implemented in status() if implemented}
    assert {5, 6, 7, 11} <= done and 99 not in done


def test_cli_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "[done] day   7  foundations/mlp.py" in out and "of 100 days implemented" in out


def test_docs_curriculum_is_up_to_date():
    from ml100.curriculum import ROOT, markdown

    assert (ROOT / "docs" / "curriculum.md").read_text() == markdown(), "regenerate: ml100 list --markdown > docs/curriculum.md"


def test_cli_unknown_example():
    with pytest.raises(SystemExit, match="unknown example 'nope'; expected one of: .*train_mlp"):
        cli.main(["run", "nope"])


def test_harness_reports_tensor_pair_and_errors():
    good = Result([np.ones(3)], {"x": np.ones(2)}, {"w": np.ones(4)})
    bad = Result([np.ones(3)], {"x": np.ones(2)}, {"w": np.array([1.0, 1.0, 1.0 + 1e-6, 1.0])})
    failures = compare_results({"numpy": good, "tf": bad}, "float64")
    assert len(failures) == 1 and failures[0].startswith("grad of w [numpy vs tf]: max abs err 1.000e-06, max rel err")
    assert compare_results({"numpy": good, "tf": bad}, "float32") == []


def test_gradcheck_catches_a_wrong_backward(monkeypatch):
    from numpy_impl.foundations import activations

    case = Case(module="foundations.activations", build=lambda m, dtype, rng: m.Tanh(dtype=dtype),
                inputs=lambda dtype, rng: {"x": rng.standard_normal((3, 2))})
    gradcheck_numpy(case)
    monkeypatch.setattr(activations.Tanh, "derivative", lambda self, x: 1.0 - np.tanh(x))
    with pytest.raises(AssertionError, match="input x: max abs err"):
        gradcheck_numpy(case)
