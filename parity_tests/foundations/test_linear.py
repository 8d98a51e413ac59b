"""Day 6: the dense layer in three trees, against ``torch.nn.Linear`` and ``keras.layers.Dense``."""
import pytest

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
