"""Day 6: the dense layer in three trees, against ``torch.nn.Linear`` and ``keras.layers.Dense``."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity_tests.harness import Case, check_parity, gradcheck_numpy, keras_dense_reference, torch_linear_reference

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
