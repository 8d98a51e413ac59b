"""The canonical weights contract: safetensors files, strict loading with one clear error, and
the base ``Module`` API that every tree shares."""
import json
import os
import pickle
import struct

import numpy as np
import pytest
import tensorflow as tf
import torch

from ml100.backends import get_module
from ml100.weights import NotSafetensorsError, StateDictError, load_weights, save_weights

TREES = ("numpy", "torch", "tf")


def mlp(tree, dtype="float64"):
    return get_module(tree, "foundations.mlp").MLP(4, (3,), 2, dtype=dtype, rng=np.random.default_rng(0))


def test_safetensors_round_trip_is_exact_and_has_no_pickle(tmp_path):
    state = {"b": np.arange(3, dtype=np.float32), "a": np.random.default_rng(0).standard_normal((2, 5))}
    path = tmp_path / "w.safetensors"
    save_weights(path, state)
    raw = path.read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + header_len])
    assert {k for k in header if k != "__metadata__"} == {"a", "b"}
    assert header["a"]["dtype"] == "F64" and header["b"]["dtype"] == "F32"
    loaded = load_weights(path)
    for name in state:
        np.testing.assert_array_equal(loaded[name], state[name])
        assert loaded[name].dtype == state[name].dtype


def test_save_rejects_non_arrays(tmp_path):
    with pytest.raises(TypeError, match="'w' must be a numpy.ndarray, got list"):
        save_weights(tmp_path / "w.safetensors", {"w": [1.0, 2.0]})


def write_pickle(path):
    path.write_bytes(pickle.dumps({"w": np.ones(3)}))


def write_npz(path):
    # Through a file object: given a path, NumPy would append its own extension.
    with path.open("wb") as file:
        np.savez(file, w=np.ones(3))


def write_npy(path):
    with path.open("wb") as file:
        np.save(file, np.ones(3))


# Each writes one kind of file people pass as weights, and the description load_weights gives it.
NOT_SAFETENSORS = {
    "pickle": (write_pickle, "a pickle"),
    "torch.save": (lambda path: torch.save({"w": torch.ones(3)}, path), "a zip archive (torch.save's .pt"),
    "npz": (write_npz, "a zip archive (torch.save's .pt and NumPy's .npz"),
    "npy": (write_npy, "a NumPy .npy file"),
    "random bytes": (lambda path: path.write_bytes(np.random.default_rng(0).bytes(64)), "an unknown format (64 bytes starting "),
    "empty": (lambda path: path.write_bytes(b""), "an empty file"),
}


@pytest.mark.parametrize("kind", NOT_SAFETENSORS)
def test_loading_something_else_says_it_is_not_safetensors(kind, tmp_path):
    write, description = NOT_SAFETENSORS[kind]
    path = tmp_path / "weights.safetensors"
    write(path)
    with pytest.raises(NotSafetensorsError) as error:
        load_weights(path)
    assert str(error.value).startswith(f"{path} is not a safetensors file: it looks like {description}")


def test_loading_a_wrong_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"weights file {tmp_path / 'nope.safetensors'} does not exist"):
        load_weights(tmp_path / "nope.safetensors")
    with pytest.raises(IsADirectoryError, match=f"weights file {tmp_path} is a directory, not a safetensors file"):
        load_weights(tmp_path)


def test_a_truncated_safetensors_file_is_named_damaged(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, {"w": np.ones(8)})
    os.truncate(path, path.stat().st_size - 4)
    with pytest.raises(NotSafetensorsError, match=f"{path}: damaged safetensors file: "):
        load_weights(path)


@pytest.mark.parametrize("tree", TREES)
def test_one_seed_one_model_in_every_tree(tree):
    expected = mlp("numpy").canonical_state_dict()
    got = mlp(tree).canonical_state_dict()
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("tree", TREES)
def test_load_then_export_round_trips(tree):
    state = {k: np.random.default_rng(1).standard_normal(v.shape) for k, v in mlp("numpy").canonical_state_dict().items()}
    model = mlp(tree)
    model.load_canonical_state_dict(state)
    exported = model.canonical_state_dict()
    for name in state:
        np.testing.assert_array_equal(exported[name], state[name], err_msg=name)


@pytest.mark.parametrize("tree", TREES)
def test_strict_load_names_every_problem_in_one_error(tree):
    state = mlp("numpy").canonical_state_dict()
    del state["layers.0.bias"]  # missing
    state["layers.9.weight"] = np.zeros((1, 1))  # unexpected
    state["layers.1.weight"] = np.zeros((3, 2))  # wrong shape: canonical is (2, 3)
    state["layers.0.weight"] = state["layers.0.weight"].astype(np.float32)  # wrong dtype
    model = mlp(tree)
    before = model.canonical_state_dict()
    with pytest.raises(StateDictError) as error:
        model.load_canonical_state_dict(state)
    message = str(error.value)
    for expected in ["MLP.load_canonical_state_dict", "missing keys: layers.0.bias", "unexpected keys: layers.9.weight",
                     "layers.1.weight: expected shape (2, 3), got (3, 2)", "layers.0.weight: expected dtype float64, got float32"]:
        assert expected in message, f"{tree}: {expected!r} not in {message!r}"
    # Nothing was half-loaded.
    after = model.canonical_state_dict()
    assert all(np.array_equal(after[k], before[k]) for k in before)


def native(tree, x):
    return {"numpy": lambda a: a, "torch": torch.from_numpy, "tf": tf.constant}[tree](x)


@pytest.mark.parametrize("tree", TREES)
def test_wrong_input_shape_or_dtype_is_a_clear_error(tree):
    model = mlp(tree)
    with pytest.raises(ValueError, match=r"Linear: x must have shape \(\.\.\., 4\), got \(5, 3\)"):
        model(native(tree, np.zeros((5, 3))))
    with pytest.raises(TypeError, match="Linear: x must have dtype float64, got float32"):
        model(native(tree, np.zeros((5, 4), dtype=np.float32)))


@pytest.mark.parametrize("tree", TREES)
def test_unsupported_dtype_is_a_clear_error(tree):
    with pytest.raises(TypeError, match=r"dtype must be one of \('float32', 'float64'\), got 'float16'"):
        get_module(tree, "foundations.linear").Linear(3, 2, dtype="float16")
