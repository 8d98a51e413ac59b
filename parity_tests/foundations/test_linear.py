"""Day 6: the dense layer in three trees, against ``torch.nn.Linear`` and ``keras.layers.Dense``."""
import keras
import numpy as np
import pytest
import torch

from parity_tests.harness import Case, check_parity, gradcheck_numpy, run_tf, run_torch

IN, OUT = 5, 3


def torch_linear(state, inputs, cotangents, dtype):
    layer = torch.nn.Linear(IN, OUT, dtype=getattr(torch, dtype))
    layer.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return run_torch(layer, inputs, ("x",), cotangents)


def keras_dense(state, inputs, cotangents, dtype):
    layer = keras.layers.Dense(OUT, dtype=dtype)
    layer.build((None, IN))
    # Keras stores the kernel (in, out): the transpose of the canonical weight.
    layer.kernel.assign(state["weight"].T)
    layer.bias.assign(state["bias"])
    to_canonical = lambda g: {"weight": g["weight"].numpy().T, "bias": g["bias"].numpy()}
    return run_tf(layer, inputs, ("x",), cotangents, {"weight": layer.kernel, "bias": layer.bias}, to_canonical)


def linear_case(leading=(4,)):
    return Case(
        module="foundations.linear",
        build=lambda m, dtype, rng: m.Linear(IN, OUT, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((*leading, IN)).astype(dtype)},
        references={"torch.nn.Linear": torch_linear, "keras.layers.Dense": keras_dense},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_linear_parity(dtype):
    check_parity(linear_case(), dtype)


def test_linear_parity_with_extra_leading_axes():
    check_parity(linear_case(leading=(2, 3)), "float64")


def test_linear_gradcheck():
    gradcheck_numpy(linear_case())
