"""Day 6: the dense layer in three trees, against ``torch.nn.Linear`` and ``keras.layers.Dense``."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy,
                                  keras_dense_reference, torch_linear_reference)

IN, OUT = 5, 3






def linear_case(leading=(4,)):
    return Case(
        module="foundations.linear",
        build=lambda m, dtype, rng: m.Linear(IN, OUT, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((*leading, IN)).astype(dtype)},
        references={"torch.nn.Linear": torch_linear_reference(IN, OUT), "keras.layers.Dense": keras_dense_reference(IN, OUT)},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_linear_parity(dtype):
    check_parity(linear_case(), dtype)


def test_linear_parity_with_extra_leading_axes():
    check_parity(linear_case(leading=(2, 3)), "float64")


def test_linear_gradcheck():
    gradcheck_numpy(linear_case())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(in_features=st.integers(1, 7), out_features=st.integers(1, 7),
       leading=st.lists(st.integers(1, 4), min_size=1, max_size=3), bias=st.booleans())
def test_linear_fuzz(in_features, out_features, leading, bias):
    """Random widths, leading axes and bias on/off: every tree and torch.nn.Linear agree."""
    case = Case(
        module="foundations.linear",
        build=lambda m, dtype, rng: m.Linear(in_features, out_features, bias=bias, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((*leading, in_features)).astype(dtype)},
        references={"torch.nn.Linear": torch_linear_reference(in_features, out_features)} if bias else {},
    )
    check_parity(case, "float64")


# torch.nn.Linear's own init warns that drawing an empty weight is a no-op.
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
@pytest.mark.parametrize("in_features, out_features", [(0, OUT), (IN, 0)])
def test_zero_width_linear_matches_torch(in_features, out_features):
    """torch builds ``Linear(0, k)`` (an empty weight, a zero bias: the output is the bias) and
    ``Linear(k, 0)`` (an empty output); so do the trees, with the same outputs and gradients."""
    case = Case(
        module="foundations.linear",
        build=lambda m, dtype, rng: m.Linear(in_features, out_features, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((4, in_features)).astype(dtype)},
        references={"torch.nn.Linear": torch_linear_reference(in_features, out_features)},
    )
    results = check_parity(case, "float64")
    assert results["numpy"].outputs[0].shape == (4, out_features)
    fresh = get_module("numpy", "foundations.linear").Linear(in_features, out_features, rng=np.random.default_rng(0))
    assert not np.any(fresh.params["bias"]) if in_features == 0 else fresh.params["weight"].size == 0


#: (arguments, keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "negative in_features": ((-1, OUT), {}, ValueError, "Linear: in_features must be an int >= 0, got -1"),
    "negative out_features": ((IN, -3), {}, ValueError, "Linear: out_features must be an int >= 0, got -3"),
    "float in_features": ((5.0, OUT), {}, ValueError, "Linear: in_features must be an int >= 0, got 5.0"),
    "bool out_features": ((IN, True), {}, ValueError, "Linear: out_features must be an int >= 0, got True"),
    "string bias": ((IN, OUT), {"bias": "yes"}, TypeError, "Linear: bias must be a bool (True or False), got 'yes'"),
    "seed as rng": ((IN, OUT), {"rng": 0}, TypeError,
                    "Linear: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, "foundations.linear").Linear(*args, **kwargs))
