"""Day 37: the DDPM noise schedules and ``add_noise`` in three trees, against ``diffusers.DDPMScheduler``.

What is compared, and why (diffusers computes its schedule in **float32**: ``torch.linspace(...,
dtype=torch.float32)``, the cosine betas rounded to float32, ``torch.cumprod`` in float32):

- the schedule ``betas``/``alphas``/``alphas_cumprod``: ours (float64) against diffusers' float32
  tensors at the float32 tolerance (test_schedule_matches_diffusers_float32), and against an
  independent float64 recomputation of diffusers' formulas at the float64 tolerance
  (test_schedule_matches_the_formulas_in_float64);
- ``add_noise``: through the harness; in float32 the reference is diffusers' own scheduler, in
  float64 the same scheduler with its ``alphas_cumprod`` replaced by the float64 recomputation
  (:func:`diffusers_float64_alphas_cumprod`; its float32 one would differ from any float64 schedule
  by ~1e-5 relative at the cosine schedule's end, which is rounding, not the formula).

Keras has no diffusion schedule: there is no Keras reference (the TF tree is compared to diffusers).
The timesteps are int64 inputs, never perturbed, without gradient.
"""
import math

import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_tensors,
                                  gradcheck_numpy, run_torch)

MODULE = "generative.diffusion_schedule"
SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
#: A small schedule keeps the tests fast; the defaults (T = 1000) are checked against diffusers too.
T = 50
X_SHAPE = (4, 2, 3, 3)


def diffusers_scheduler(beta_schedule: str, num_train_timesteps: int = T, **options):
    """diffusers' ``DDPMScheduler`` (imported here: the conftest's import order keeps it after
    torch._dynamo and TF, which it needs)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, **options)


def diffusers_float64_betas(beta_schedule: str, steps: int, beta_start: float = 0.0001, beta_end: float = 0.02):
    """diffusers' three beta formulas recomputed in float64 torch (its linspace and its per-step
    Python loop for the cosine schedule), written independently of :mod:`ml100.schedules`."""
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    alpha_bar = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)],
                        dtype=torch.float64)


def diffusers_float64_alphas_cumprod(beta_schedule: str, steps: int, **options) -> torch.Tensor:
    """The conversion fed to the float64 reference: diffusers' ``alphas_cumprod`` formula, in float64."""
    return torch.cumprod(1 - diffusers_float64_betas(beta_schedule, steps, **options), dim=0)


def diffusers_add_noise_reference(beta_schedule: str, steps: int = T):
    """``DDPMScheduler.add_noise(x0, noise, timesteps)``: its own float32 schedule in float32, the
    float64 recomputation in float64 (it casts ``alphas_cumprod`` to the sample's dtype)."""
    def run(state, inputs, cotangents, dtype):
        scheduler = diffusers_scheduler(beta_schedule, steps)
        if dtype == "float64":
            scheduler.alphas_cumprod = diffusers_float64_alphas_cumprod(beta_schedule, steps)
        return run_torch(scheduler.add_noise, inputs, ("x0", "noise"), cotangents, params={})

    return run


def draw_inputs(shape, steps):
    """x0 and noise standard normal, timesteps over the whole range with both ends planted."""
    def inputs(dtype, rng):
        timesteps = rng.integers(0, steps, size=shape[:1]).astype(np.int64)
        if timesteps.size >= 2:
            timesteps[:2] = (0, steps - 1)
        return {"x0": rng.standard_normal(shape).astype(dtype), "noise": rng.standard_normal(shape).astype(dtype),
                "timesteps": timesteps}

    return inputs


def schedule_case(beta_schedule="linear", shape=X_SHAPE, steps=T):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.DDPMSchedule(steps, beta_schedule=beta_schedule, dtype=dtype, rng=rng),
        inputs=draw_inputs(shape, steps),
        differentiable=("x0", "noise"),
        references={"diffusers.DDPMScheduler.add_noise": diffusers_add_noise_reference(beta_schedule, steps)},
        batch_axes={"timesteps": 0},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("beta_schedule", SCHEDULES)
def test_add_noise_parity(beta_schedule, dtype):
    """x_t, dL/dx0 and dL/dnoise in every tree and diffusers; special values and the empty batch too."""
    check_parity(schedule_case(beta_schedule), dtype)


@pytest.mark.parametrize("shape", [(3,), (3, 5), (2, 1, 4, 4)])
def test_add_noise_parity_for_any_sample_shape(shape):
    """``(N, *)``: one scale per sample, broadcast over the rest (any layout, channels-last included)."""
    results = check_parity(schedule_case("squaredcos_cap_v2", shape), "float64")
    assert results["numpy"].outputs[0].shape == shape


@pytest.mark.parametrize("beta_schedule", SCHEDULES)
def test_gradcheck(beta_schedule):
    """Finite differences of the two hand-written scalings."""
    gradcheck_numpy(schedule_case(beta_schedule, shape=(3, 2)))


def schedule_arrays(tree, beta_schedule, steps, **options):
    model = get_module(tree, MODULE).DDPMSchedule(steps, beta_schedule=beta_schedule, **options, dtype="float64")
    return {name: np.asarray(getattr(model, name)) for name in ("betas", "alphas", "alphas_cumprod")}


@pytest.mark.parametrize("options", [{"steps": 1000}, {"steps": T}, {"steps": 7, "beta_start": 0.001, "beta_end": 0.05}])
@pytest.mark.parametrize("beta_schedule", SCHEDULES)
def test_schedule_matches_diffusers_float32(beta_schedule, options):
    """Our float64 schedule against diffusers' float32 tensors, within the float32 tolerance
    (defaults included: T = 1000, beta_start = 1e-4, beta_end = 0.02)."""
    options = dict(options)
    steps = options.pop("steps")
    reference = diffusers_scheduler(beta_schedule, steps, **options)
    assert reference.alphas_cumprod.dtype == torch.float32
    failures = []
    for tree in TREES:
        ours = schedule_arrays(tree, beta_schedule, steps, **options)
        for name in ours:
            compare_tensors(name, f"{tree} (float64) vs diffusers (float32)", ours[name].astype(np.float32),
                            getattr(reference, name).numpy(), "float32", failures)
    assert_no_failures(failures, beta_schedule)


@pytest.mark.parametrize("beta_schedule", SCHEDULES)
def test_schedule_matches_the_formulas_in_float64(beta_schedule):
    """Our schedule against diffusers' formulas recomputed in float64, within the float64 tolerance;
    the cosine schedule's last betas hit the 0.999 clip."""
    betas = diffusers_float64_betas(beta_schedule, 1000).numpy()
    failures = []
    for tree in TREES:
        ours = schedule_arrays(tree, beta_schedule, 1000)
        compare_tensors("betas", f"{tree} vs float64 formula", ours["betas"], betas, "float64", failures)
        compare_tensors("alphas", f"{tree} vs float64 formula", ours["alphas"], 1 - betas, "float64", failures)
        compare_tensors("alphas_cumprod", f"{tree} vs float64 formula", ours["alphas_cumprod"],
                        diffusers_float64_alphas_cumprod(beta_schedule, 1000).numpy(), "float64", failures)
    assert_no_failures(failures, beta_schedule)
    if beta_schedule == "squaredcos_cap_v2":
        assert betas[-1] == 0.999 and ours["betas"][-1] == 0.999


def test_numpy_used_twice_matches_torch_autograd():
    """One NumPy schedule noising two batches, backpropagated in reverse order: each backward pops
    its own call's scales (LIFO), as torch autograd gives for the same two calls."""
    rng = np.random.default_rng(3)
    draw = draw_inputs((3, 4), T)
    first, second = draw("float64", rng), draw("float64", rng)
    g_first, g_second = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    ours = get_module("numpy", MODULE).DDPMSchedule(T, dtype="float64")
    ours(*first.values())
    ours(*second.values())
    got_second, got_first = ours.backward(g_second), ours.backward(g_first)
    reference = get_module("torch", MODULE).DDPMSchedule(T, dtype="float64")
    failures = []
    for inputs, cotangent, got in ((first, g_first, got_first), (second, g_second, got_second)):
        x0, noise = (torch.tensor(inputs[name], requires_grad=True) for name in ("x0", "noise"))
        (reference(x0, noise, torch.from_numpy(inputs["timesteps"])) * torch.from_numpy(cotangent)).sum().backward()
        compare_tensors("grad x0", "numpy twice vs torch", got[0], x0.grad.numpy(), "float64", failures)
        compare_tensors("grad noise", "numpy twice vs torch", got[1], noise.grad.numpy(), "float64", failures)
    assert_no_failures(failures, "used twice")
    assert not np.allclose(got_first[0], got_second[0])


def test_endpoints_of_the_forward_process():
    """t = 0 keeps almost all of x0 (sqrt(alpha_bar_0) = sqrt(1 - beta_start)); at t = T-1 of the
    cosine schedule x_t is almost pure noise (alpha_bar ~ 0)."""
    model = get_module("numpy", MODULE).DDPMSchedule(beta_schedule="squaredcos_cap_v2", dtype="float64")
    x0, noise = np.ones((2, 3)), np.zeros((2, 3))
    x_t = model(x0, noise, np.array([0, 999], dtype=np.int64))
    np.testing.assert_allclose(x_t[0], math.sqrt(model.alphas_cumprod[0]))
    assert model.alphas_cumprod[0] > 0.9999 and abs(x_t[1, 0]) < 1e-4


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(beta_schedule=st.sampled_from(SCHEDULES), steps=st.integers(1, 20), batch=st.integers(1, 3),
       sample_shape=st.lists(st.integers(0, 3), max_size=2))
def test_fuzz(beta_schedule, steps, batch, sample_shape):
    """Random schedule lengths and sample shapes (empty samples too): every tree and diffusers agree.
    The batch is >= 1 here (the special-values pass plants values in sample 0); check_parity's own
    empty-batch pass covers N = 0."""
    check_parity(schedule_case(beta_schedule, (batch, *sample_shape), steps), "float64")


#: (keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "unknown schedule": ({"beta_schedule": "cosine"}, ValueError,
                         "DDPMSchedule: beta_schedule must be one of ('linear', 'scaled_linear', 'squaredcos_cap_v2'), "
                         "got 'cosine'"),
    "zero steps": ({"num_train_timesteps": 0}, ValueError, "DDPMSchedule: num_train_timesteps must be an int >= 1, got 0"),
    "float steps": ({"num_train_timesteps": 10.0}, ValueError,
                    "DDPMSchedule: num_train_timesteps must be an int >= 1, got 10.0"),
    "negative beta_start": ({"beta_start": -0.1}, ValueError, "DDPMSchedule: beta_start must be > 0, got -0.1"),
    "seed as rng": ({"rng": 0}, TypeError,
                    "DDPMSchedule: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).DDPMSchedule(**kwargs))


X, N = np.zeros((2, 3)), np.zeros((2, 3))
#: (x0, noise, timesteps, exception, message): every tree raises exactly this in forward.
BAD_INPUTS = {
    "timestep too large": (X, N, np.array([3, 10]), ValueError,
                           "DDPMSchedule: timesteps must lie in [0, 10), got out-of-range values [10]"),
    "negative timestep": (X, N, np.array([-1, 2]), ValueError,
                          "DDPMSchedule: timesteps must lie in [0, 10), got out-of-range values [-1]"),
    "int32 timesteps": (X, N, np.array([1, 2], np.int32), TypeError,
                        "DDPMSchedule: timesteps must have dtype int64, got int32 (cast it explicitly)"),
    "float timesteps": (X, N, np.array([1.0, 2.0]), TypeError,
                        "DDPMSchedule: timesteps must have dtype int64, got float64 (cast it explicitly)"),
    "one timestep for a batch": (X, N, np.array([1]), ValueError,
                                 "DDPMSchedule: timesteps must have shape (2,), got (1,)"),
    "noise of another shape": (X, np.zeros((2, 4)), np.array([1, 2]), ValueError,
                               "DDPMSchedule: noise must have shape (2, 3), got (2, 4)"),
    "float32 x0": (X.astype(np.float32), N, np.array([1, 2]), TypeError,
                   "DDPMSchedule: x0 must have dtype float64, got float32 (cast it explicitly)"),
    "0-d x0": (np.zeros(()), np.zeros(()), np.array([1]), ValueError,
               "DDPMSchedule: x0 must have a batch axis, shape (N, *), got a 0-d tensor"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_INPUTS))
def test_bad_inputs_raise_one_clear_error(what, tree):
    *arrays, error, message = BAD_INPUTS[what]
    model = get_module(tree, MODULE).DDPMSchedule(10, dtype="float64")
    tensor = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}[tree]
    assert_raises_exactly(error, message, lambda: model(*map(tensor, arrays)))
