"""Day 35: spectral normalization (``SNLinear``) in three trees, against
``torch.nn.utils.parametrizations.spectral_norm(nn.Linear(...))`` fed the same state dict unchanged.

Train mode mutates the ``u``/``v`` buffers on every forward, and the harness's ``check_parity``
runs one extra NumPy forward (to shape the cotangents) that would advance NumPy's buffers one
step ahead of the others. So train mode is checked as a trajectory (:func:`check_trajectory`):
every process starts from the same state and does forward + backward per step; outputs, input,
weight and bias gradients, the updated ``u``, ``v`` and ``sigma`` are compared after each step.
Eval mode (buffers frozen) goes through ``check_parity``: parity, the special-values pass, the
empty batch, and ``gradcheck_numpy`` — in train mode finite differences would themselves run the
power iteration, moving ``u``, ``v`` between the perturbed forwards (and the analytic gradient
treats them as constants), so only eval mode's function is the one the backward differentiates.

No Keras reference: ``keras.layers.SpectralNormalization`` is another algorithm (only ``u``
stored, ``v`` iterated first, ``1/sqrt(max(sum x^2, eps))`` normalization, and the kernel itself
overwritten with ``W/sigma`` in training), so no weight conversion makes it compute torch's
function; see docs/days/day35.md.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
import torch
from torch.nn.utils.parametrizations import spectral_norm

from ml100.backends import get_module
from parity_tests.harness import (TOLERANCES, TREES, Case, Trajectory, assert_raises_exactly, check_parity, check_trajectory,
                                  gradcheck_numpy, random_weights, run_torch, run_tree, to_tree, torch_module_reference)

MODULE = "generative.wgan"
IN, OUT, N = 4, 3, 5
WEIGHT = "parametrizations.weight.original"
U = "parametrizations.weight.0._u"
V = "parametrizations.weight.0._v"
STEPS = 4


def torch_spectral_norm_linear(n_power_iterations=1, bias=True, training=True, in_features=IN, out_features=OUT):
    """``spectral_norm(nn.Linear(in_features, out_features))``: its ``state_dict`` names are the canonical ones."""
    def make(dtype):
        layer = spectral_norm(torch.nn.Linear(in_features, out_features, bias=bias), n_power_iterations=n_power_iterations)
        return layer.train(training)
    return make


def eval_case(bias=True, n_power_iterations=1):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.SNLinear(IN, OUT, bias, n_power_iterations, dtype=dtype, rng=rng).eval(),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((N, IN)).astype(dtype)},
        references={"torch.nn spectral_norm": torch_module_reference(
            torch_spectral_norm_linear(n_power_iterations, bias, training=False))},
    )


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_spectral_norm_eval_parity(dtype, bias):
    check_parity(eval_case(bias), dtype)


def test_spectral_norm_eval_gradcheck():
    gradcheck_numpy(eval_case())


def shared_state(dtype, bias=True, sizes=(N, IN, OUT)) -> dict[str, np.ndarray]:
    """One random canonical state (weight, bias, u, v) for every process of a trajectory."""
    model = get_module("numpy", MODULE).SNLinear(*sizes[1:], bias, dtype=dtype, rng=np.random.default_rng(0))
    return random_weights(model.canonical_state_dict(), np.random.default_rng(1))


def step_data(t: int, dtype: str, sizes=(N, IN, OUT)) -> tuple[dict, list]:
    """Step ``t``'s input and output cotangent, the same for every process; ``sizes`` is (batch, in, out)."""
    rng = np.random.default_rng(100 + t)
    batch, in_features, out_features = sizes
    return ({"x": rng.standard_normal((batch, in_features)).astype(dtype)},
            [rng.standard_normal((batch, out_features)).astype(dtype)])


def observe(result, state: dict, dtype: str) -> dict[str, np.ndarray]:
    """What one step shows: output, gradients, the buffers after the step and sigma = u^T W v."""
    u, v, weight = state[U], state[V], state[WEIGHT]
    return {"output": result.outputs[0], "grad x": result.input_grads["x"], **{f"grad {k}": g for k, g in result.param_grads.items()},
            "u": u, "v": v, "sigma": np.asarray(u @ (weight @ v), dtype=dtype)}


def spectral_norm_trajectory(dtype, n_power_iterations, training, bias=True, sizes=(N, IN, OUT), steps=STEPS) -> Trajectory:
    state = shared_state(dtype, bias, sizes)

    def start(tree, dtype):
        model = get_module(tree, MODULE).SNLinear(*sizes[1:], bias, n_power_iterations, dtype=dtype)
        model.load_canonical_state_dict(state)
        return tree, model.train(training)

    def step(process, t):
        tree, model = process
        inputs, cotangents = step_data(t, dtype, sizes)
        result = run_tree(tree, model, inputs, ("x",), cotangents)
        return observe(result, model.canonical_state_dict(), dtype)

    def start_reference(dtype):
        layer = torch_spectral_norm_linear(n_power_iterations, bias, training, *sizes[1:])(dtype).to(getattr(torch, dtype))
        layer.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        return layer

    def step_reference(layer, t):
        inputs, cotangents = step_data(t, dtype, sizes)
        result = run_torch(layer, inputs, ("x",), cotangents, params=dict(layer.named_parameters()))
        return observe(result, {k: v.detach().numpy() for k, v in layer.state_dict().items()}, dtype)

    return Trajectory(steps, start, step, {"torch.nn spectral_norm": (start_reference, step_reference)})


@pytest.mark.parametrize("n_power_iterations", [1, 3])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_spectral_norm_train_trajectory(dtype, n_power_iterations):
    histories = check_trajectory(spectral_norm_trajectory(dtype, n_power_iterations, True), dtype, "SNLinear train mode")
    # Something moved: the power iteration changed u between the first and the last step.
    u = [h["u"] for h in histories["numpy"]]
    assert not np.allclose(u[0], u[-1], rtol=0, atol=TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_spectral_norm_eval_keeps_buffers(dtype):
    histories = check_trajectory(spectral_norm_trajectory(dtype, 1, False, bias=False), dtype, "SNLinear eval mode")
    state = shared_state(dtype, bias=False)
    for h in histories["numpy"]:
        np.testing.assert_array_equal(h["u"], state[U])
        np.testing.assert_array_equal(h["v"], state[V])


def test_state_dict_is_torchs():
    """Same names, shapes and dtypes as torch's parametrized nn.Linear, in every tree."""
    expected = {k: (tuple(v.shape), "float64") for k, v in spectral_norm(torch.nn.Linear(IN, OUT, dtype=torch.float64)).state_dict().items()}
    for tree in TREES:
        state = get_module(tree, MODULE).SNLinear(IN, OUT, dtype="float64", rng=np.random.default_rng(0)).canonical_state_dict()
        assert {k: (v.shape, v.dtype.name) for k, v in state.items()} == expected, tree


def test_initialization_same_in_every_tree_and_converged():
    """The same rng gives the same state in every tree; u, v are unit vectors and, after torch's 15
    init iterations, sigma is a lower bound of the largest singular value (power iteration)."""
    states = {tree: get_module(tree, MODULE).SNLinear(IN, OUT, dtype="float64", rng=np.random.default_rng(3)).canonical_state_dict()
              for tree in TREES}
    tol = TOLERANCES["float64"]
    for tree in ("torch", "tf"):
        for name, value in states["numpy"].items():
            np.testing.assert_allclose(states[tree][name], value, rtol=tol, atol=tol, err_msg=f"{tree} {name}")
    state = states["numpy"]
    assert abs(np.linalg.norm(state[U]) - 1) < tol and abs(np.linalg.norm(state[V]) - 1) < tol
    sigma = state[U] @ state[WEIGHT] @ state[V]
    assert 0 < sigma <= np.linalg.norm(state[WEIGHT], 2) * (1 + tol)


def test_numpy_used_twice_matches_autograd():
    """Two train-mode forwards then two backwards (LIFO): each backward uses its own forward's u, v
    and sigma, as torch's clones do; gradients sum."""
    dtype = "float64"
    state = shared_state(dtype)
    numpy_m = get_module("numpy", MODULE).SNLinear(IN, OUT, dtype=dtype)
    numpy_m.load_canonical_state_dict(state)
    layer = torch_spectral_norm_linear()(dtype).to(torch.float64)
    layer.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    (x1, x2), (g1, g2) = [step_data(t, dtype)[0]["x"] for t in (1, 2)], [step_data(t, dtype)[1][0] for t in (1, 2)]
    y1, y2 = numpy_m.forward(x1), numpy_m.forward(x2)
    gx2, gx1 = numpy_m.backward(g2), numpy_m.backward(g1)
    tx1, tx2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    ty1, ty2 = layer(tx1), layer(tx2)
    ((ty1 * torch.from_numpy(g1)).sum() + (ty2 * torch.from_numpy(g2)).sum()).backward()
    tol = TOLERANCES[dtype]
    pairs = {"y1": (y1, ty1), "y2": (y2, ty2), "gx1": (gx1, tx1.grad), "gx2": (gx2, tx2.grad),
             WEIGHT: (numpy_m.grads[WEIGHT], layer.parametrizations.weight.original.grad), "bias": (numpy_m.grads["bias"], layer.bias.grad)}
    for name, (a, b) in pairs.items():
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=tol, atol=tol, err_msg=name)


ERRORS = [
    ({"n_power_iterations": 0}, ValueError, "SNLinear: n_power_iterations must be an int >= 1, got 0"),
    ({"eps": 0.0}, ValueError, "SNLinear: eps must be > 0, got 0.0"),
    ({"in_features": 0}, ValueError, "SNLinear: in_features must be an int >= 1, got 0"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("kwargs, error, message", ERRORS)
def test_constructor_errors(tree, kwargs, error, message):
    arguments = {"in_features": IN, "out_features": OUT, **kwargs}
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).SNLinear(**arguments, dtype="float64"))



@pytest.mark.parametrize("x", [np.zeros((N, IN + 1)), np.zeros((N, IN), np.float32)], ids=["wrong width", "wrong dtype"])
def test_input_errors_are_the_same_in_every_tree(x):
    """A bad input raises one error, the NumPy tree's text, in every tree (before the buffers move)."""
    with pytest.raises(Exception) as raised:
        get_module("numpy", MODULE).SNLinear(IN, OUT, dtype="float64")(x)
    for tree in TREES:
        model = get_module(tree, MODULE).SNLinear(IN, OUT, dtype="float64", rng=np.random.default_rng(0))
        before = model.canonical_state_dict()
        assert_raises_exactly(raised.type, str(raised.value), lambda: model(to_tree(tree, x)))
        for name, value in model.canonical_state_dict().items():
            np.testing.assert_array_equal(value, before[name], err_msg=f"{tree} {name}")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 3), in_features=st.integers(1, 4), out_features=st.integers(1, 4),
       n_power_iterations=st.integers(1, 2), bias=st.booleans())
def test_spectral_norm_fuzz(batch, in_features, out_features, n_power_iterations, bias):
    """Small random shapes (an empty batch and width-1 matrices included), two train steps, float64.
    A 1x1 weight is left to :func:`test_one_by_one_weight_gradient_is_rounding_noise`: its gradient is
    zero, and relative comparison of two trees' rounding noise means nothing."""
    assume(in_features * out_features > 1)
    trajectory = spectral_norm_trajectory("float64", n_power_iterations, True, bias, (batch, in_features, out_features), steps=2)
    check_trajectory(trajectory, "float64", f"SNLinear fuzz {(batch, in_features, out_features)}")


def test_one_by_one_weight_gradient_is_rounding_noise():
    """A 1x1 weight divided by its spectral norm is sign(w), a constant: the weight's gradient
    (G - (u^T G v) u v^T) / sigma is exactly zero, and what each tree (and torch) returns is the rounding
    of that cancellation. It must be at rounding level relative to the cancelled term |G| / sigma,
    while the output and the input gradient still match torch's."""
    sizes, dtype = (3, 1, 1), "float64"
    state = shared_state(dtype, True, sizes)
    inputs, cotangents = step_data(1, dtype, sizes)
    cancelled = abs(float(np.sum(cotangents[0] * inputs["x"]))) / abs(float(state[WEIGHT].item()))
    layer = torch_spectral_norm_linear(1, True, True, *sizes[1:])(dtype).to(torch.float64)
    layer.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    results = {"torch.nn spectral_norm": run_torch(layer, inputs, ("x",), cotangents, params=dict(layer.named_parameters()))}
    for tree in TREES:
        model = get_module(tree, MODULE).SNLinear(*sizes[1:], dtype=dtype)
        model.load_canonical_state_dict(state)
        results[tree] = run_tree(tree, model, inputs, ("x",), cotangents)
    eps = np.finfo(np.float64).eps
    for name, result in results.items():
        assert abs(float(result.param_grads[WEIGHT].item())) <= 8 * eps * cancelled, name
        # With sigma = |w| the layer is y = sign(w) x + b, whatever the power iteration did.
        expected = np.sign(state[WEIGHT].item()) * inputs["x"] + state["bias"]
        np.testing.assert_allclose(result.outputs[0], expected, rtol=TOLERANCES[dtype], atol=0, err_msg=name)
        np.testing.assert_allclose(result.input_grads["x"], np.sign(state[WEIGHT].item()) * cotangents[0],
                                   rtol=TOLERANCES[dtype], atol=0, err_msg=name)
