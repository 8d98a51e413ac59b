"""Day 39: the DDPM loss, the ancestral step and the sampling loop in three trees, against diffusers.

The reference is ``diffusers.DDPMScheduler`` fed our schedule (:func:`diffusers_ddpm_scheduler`: its
``alphas_cumprod`` replaced by the float64 recomputation of day 37, cast to the dtype; its own is
float32 arithmetic). Its ``step`` draws the noise itself (``randn_tensor`` with a ``generator``): in
the parity cases the draw is replaced by the noise passed to our trees (:func:`diffusers_step_reference`),
so the noise's gradient is compared too; :func:`test_noise_drawn_by_a_generator_is_the_noise_passed_in`
shows that our step fed ``torch.randn`` of a seeded generator is diffusers' step fed that generator, and
the whole loop (:func:`test_ddpm_sample_same_images_in_every_tree_and_diffusers`) uses that noise.

``fixed_large_log`` differs on purpose: diffusers' step takes ``log(beta_t) ** 0.5`` as the standard
deviation, the square root of a negative number (NaN; :func:`test_diffusers_fixed_large_log_is_nan`); ours
is :math:`\\exp(\\tfrac12\\log\\beta_t) = \\sqrt{\\beta_t}`, compared with diffusers' ``fixed_large``.
Keras has no diffusion scheduler: there is no Keras reference. The loss's reference is
``torch.nn.functional.mse_loss`` to the target diffusers gives (``get_velocity`` for "v_prediction").
"""
import importlib
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.schedules import PREDICTION_TYPES, VARIANCE_TYPES
from parity_tests.generative.test_diffusion_schedule import diffusers_float64_alphas_cumprod
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_tensors,
                                  gradcheck_numpy, nchw_to_nhwc, nhwc_to_nchw, run_torch)

MODULE = "generative.ddpm"
#: A short cosine schedule: alpha_bar runs from ~1 to ~0 in T steps, so every regime is met.
T = 10
SCHEDULE = "squaredcos_cap_v2"
X_SHAPE = (3, 2, 3, 3)
TENSOR = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}


def tree_schedule(topic, dtype: str, steps: int = T):
    """The day-37 ``DDPMSchedule`` of the tree that ``topic`` (a tree's ``generative.ddpm``/``ddim``) belongs to."""
    return importlib.import_module(f"{topic.__package__}.diffusion_schedule").DDPMSchedule(
        steps, beta_schedule=SCHEDULE, dtype=dtype)


def diffusers_ddpm_scheduler(dtype: str, steps: int = T, **config):
    """The conversion fed to the reference: ``DDPMScheduler`` with our schedule, the float64
    recomputation of diffusers' formula cast to ``dtype``."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=steps, beta_schedule=SCHEDULE, **config)
    scheduler.alphas_cumprod = diffusers_float64_alphas_cumprod(SCHEDULE, steps).to(getattr(torch, dtype))
    return scheduler


def diffusers_step_reference(variance_type, clip_sample, prediction_type):
    """``DDPMScheduler.step`` with its noise draw replaced by the noise input (so its gradient flows).
    Our ``fixed_large_log`` is compared with diffusers' ``fixed_large`` (see the module docstring)."""
    from diffusers.schedulers import scheduling_ddpm

    reference_type = "fixed_large" if variance_type == "fixed_large_log" else variance_type

    def run(state, inputs, cotangents, dtype):
        scheduler = diffusers_ddpm_scheduler(dtype, variance_type=reference_type, clip_sample=clip_sample,
                                             prediction_type=prediction_type)

        def step(model_output, timestep, sample, noise):
            with mock.patch.object(scheduling_ddpm, "randn_tensor", lambda *args, **kwargs: noise):
                return scheduler.step(model_output, int(timestep), sample, return_dict=False)

        return run_torch(step, inputs, ("model_output", "sample", "noise"), cotangents, params={})

    return run


def step_inputs(shape, timestep):
    def inputs(dtype, rng):
        return {"model_output": rng.standard_normal(shape).astype(dtype), "timestep": np.array(timestep, np.int64),
                "sample": rng.standard_normal(shape).astype(dtype), "noise": rng.standard_normal(shape).astype(dtype)}

    return inputs


def step_case(variance_type="fixed_small", clip_sample=True, prediction_type="epsilon", timestep=T // 2, shape=X_SHAPE):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.DDPMStep(tree_schedule(m, dtype), variance_type, clip_sample, 1.0, prediction_type),
        inputs=step_inputs(shape, timestep),
        differentiable=("model_output", "sample", "noise"),
        output_names=("prev_sample", "pred_original_sample"),
        references={"diffusers.DDPMScheduler.step": diffusers_step_reference(variance_type, clip_sample, prediction_type)},
        batch_axes={"timestep": None},
    )


#: (variance_type, clip_sample, prediction_type, timestep): every variance type with the clip on and
#: off, the prediction types and the timesteps (last, middle, 0: no noise) spread over them.
STEP_GRID = [(variance_type, clip, PREDICTION_TYPES[k % 3], (T - 1, T // 2, 0)[(k + clip) % 3])
             for k, variance_type in enumerate(VARIANCE_TYPES) for clip in (True, False)]


@pytest.mark.parametrize("variance_type, clip_sample, prediction_type, timestep", STEP_GRID)
def test_step_parity_float64(variance_type, clip_sample, prediction_type, timestep):
    """prev_sample, pred_original_sample and the gradients of model_output, sample and noise in every
    tree and diffusers; special values and the empty batch too."""
    check_parity(step_case(variance_type, clip_sample, prediction_type, timestep), "float64")


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_step_parity_float32(prediction_type):
    check_parity(step_case("fixed_small", True, prediction_type, T - 2), "float32")


def test_every_step_configuration_matches_diffusers():
    """Forward, all 4 x 2 x 3 x T configurations (variance type, clip, prediction type, every timestep):
    each tree's prev_sample and pred_original_sample equal diffusers' in float64."""
    from diffusers.schedulers import scheduling_ddpm

    rng = np.random.default_rng(5)
    model_output, sample, noise = (3 * rng.standard_normal(X_SHAPE) for _ in range(3))
    schedules = {tree: tree_schedule(get_module(tree, MODULE), "float64") for tree in TREES}
    failures = []
    for variance_type in VARIANCE_TYPES:
        for clip_sample in (True, False):
            for prediction_type in PREDICTION_TYPES:
                scheduler = diffusers_ddpm_scheduler(
                    "float64", variance_type="fixed_large" if variance_type == "fixed_large_log" else variance_type,
                    clip_sample=clip_sample, prediction_type=prediction_type)
                for t in range(T):
                    with mock.patch.object(scheduling_ddpm, "randn_tensor", lambda *a, **k: torch.from_numpy(noise)):
                        expected = scheduler.step(torch.from_numpy(model_output), t, torch.from_numpy(sample),
                                                  return_dict=False)
                    for tree in TREES:
                        to = TENSOR[tree]
                        got = get_module(tree, MODULE).ddpm_step(to(model_output), t, to(sample), to(noise),
                                                                 schedules[tree], variance_type, clip_sample, 1.0,
                                                                 prediction_type)
                        what = f"{tree} vs diffusers ({variance_type}, clip={clip_sample}, {prediction_type}, t={t})"
                        for name, ours, theirs in zip(("prev_sample", "pred_original_sample"), got, expected):
                            compare_tensors(name, what, np.asarray(ours), theirs.numpy(), "float64", failures)
    assert_no_failures(failures, "every DDPM step configuration")


def test_clip_sample_range():
    """A clip range other than 1 (diffusers' ``clip_sample_range``)."""
    from diffusers.schedulers import scheduling_ddpm

    rng = np.random.default_rng(6)
    model_output, sample, noise = (4 * rng.standard_normal(X_SHAPE) for _ in range(3))
    scheduler = diffusers_ddpm_scheduler("float64", clip_sample_range=2.5)
    with mock.patch.object(scheduling_ddpm, "randn_tensor", lambda *a, **k: torch.from_numpy(noise)):
        expected = scheduler.step(torch.from_numpy(model_output), 3, torch.from_numpy(sample), return_dict=False)
    assert np.abs(expected[1].numpy()).max() == 2.5
    failures = []
    for tree in TREES:
        to = TENSOR[tree]
        got = get_module(tree, MODULE).ddpm_step(to(model_output), 3, to(sample), to(noise),
                                                 tree_schedule(get_module(tree, MODULE), "float64"),
                                                 clip_sample_range=2.5)
        for name, ours, theirs in zip(("prev_sample", "pred_original_sample"), got, expected):
            compare_tensors(name, f"{tree} vs diffusers", np.asarray(ours), theirs.numpy(), "float64", failures)
    assert_no_failures(failures, "clip_sample_range=2.5")


def test_noise_drawn_by_a_generator_is_the_noise_passed_in():
    """diffusers' step with ``generator=torch.Generator().manual_seed(s)`` equals our step fed
    ``torch.randn(shape, generator=<the same seed>, dtype=float64)`` (its ``randn_tensor`` on CPU)."""
    rng = np.random.default_rng(7)
    model_output, sample = (torch.from_numpy(rng.standard_normal(X_SHAPE)) for _ in range(2))
    expected = diffusers_ddpm_scheduler("float64").step(model_output, 6, sample,
                                                        generator=torch.Generator().manual_seed(11)).prev_sample
    noise = torch.randn(X_SHAPE, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    schedule = tree_schedule(get_module("torch", MODULE), "float64")
    ours, _ = get_module("torch", MODULE).ddpm_step(model_output, 6, sample, noise, schedule)
    failures = []
    compare_tensors("prev_sample", "torch tree vs diffusers (generator)", ours.numpy(), expected.numpy(), "float64", failures)
    assert_no_failures(failures, "generator noise")


def test_diffusers_fixed_large_log_is_nan():
    """Why fixed_large_log is compared with fixed_large: diffusers' own step gives NaN at every t > 0."""
    rng = np.random.default_rng(8)
    model_output, sample = (torch.from_numpy(rng.standard_normal(X_SHAPE)) for _ in range(2))
    prev = diffusers_ddpm_scheduler("float64", variance_type="fixed_large_log").step(
        model_output, 4, sample, generator=torch.Generator().manual_seed(0)).prev_sample
    assert torch.isnan(prev).all()
    ours, _ = get_module("numpy", MODULE).ddpm_step(model_output.numpy(), 4, sample.numpy(), np.ones(X_SHAPE),
                                                    tree_schedule(get_module("numpy", MODULE), "float64"),
                                                    "fixed_large_log")
    assert np.isfinite(ours).all()


@pytest.mark.parametrize("variance_type, clip_sample, prediction_type, timestep",
                         [("fixed_small", True, "epsilon", T // 2), ("fixed_large", False, "v_prediction", T - 1),
                          ("fixed_small_log", True, "sample", 2), ("fixed_large_log", False, "epsilon", 0)])
def test_step_gradcheck(variance_type, clip_sample, prediction_type, timestep):
    """Finite differences of the hand-written step backward (the clip's mask included)."""
    gradcheck_numpy(step_case(variance_type, clip_sample, prediction_type, timestep, shape=(2, 3)))


# --- the loss ---------------------------------------------------------------------------------


def diffusers_loss_reference(prediction_type):
    """``F.mse_loss(model_output, target)``, the target as diffusers' training scripts take it: the
    noise, the clean sample, or ``DDPMScheduler.get_velocity(x0, noise, timesteps)``."""
    def run(state, inputs, cotangents, dtype):
        scheduler = diffusers_ddpm_scheduler(dtype)

        def loss(model_output, x0, noise, timesteps):
            target = {"epsilon": lambda: noise, "sample": lambda: x0,
                      "v_prediction": lambda: scheduler.get_velocity(x0, noise, timesteps)}[prediction_type]()
            return torch.nn.functional.mse_loss(model_output, target)

        return run_torch(loss, inputs, ("model_output", "x0", "noise"), cotangents, params={})

    return run


def loss_inputs(shape):
    def inputs(dtype, rng):
        timesteps = rng.integers(0, T, size=shape[:1]).astype(np.int64)
        return {"model_output": rng.standard_normal(shape).astype(dtype), "x0": rng.standard_normal(shape).astype(dtype),
                "noise": rng.standard_normal(shape).astype(dtype), "timesteps": timesteps}

    return inputs


def loss_case(prediction_type, shape=X_SHAPE):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.DDPMLoss(tree_schedule(m, dtype), prediction_type),
        inputs=loss_inputs(shape),
        differentiable=("model_output", "x0", "noise"),
        references={"torch.nn.functional.mse_loss + diffusers target": diffusers_loss_reference(prediction_type)},
        batch_axes={"timesteps": 0},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_loss_parity(prediction_type, dtype):
    """The loss and the gradients of model_output, x0 and noise; special values and the empty batch (NaN)."""
    check_parity(loss_case(prediction_type), dtype)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_loss_gradcheck(prediction_type):
    gradcheck_numpy(loss_case(prediction_type, shape=(2, 3)))


def test_numpy_used_twice_matches_torch_autograd():
    """One NumPy step module applied twice (as in a sampling chain), backpropagated through both:
    the second call's backward pops its own cache first (LIFO), and the chain's gradients equal
    torch autograd's through the same two calls."""
    rng = np.random.default_rng(9)
    model_outputs = [rng.standard_normal((2, 3)) for _ in range(2)]
    x, noises = rng.standard_normal((2, 3)), [rng.standard_normal((2, 3)) for _ in range(2)]
    cotangent = rng.standard_normal((2, 3))
    step = get_module("numpy", MODULE).DDPMStep(tree_schedule(get_module("numpy", MODULE), "float64"))
    middle, _ = step(model_outputs[0], 6, x, noises[0])
    step(model_outputs[1], 5, middle, noises[1])
    grad_m1, grad_middle, grad_z1 = step.backward(cotangent)
    grad_m0, grad_x, grad_z0 = step.backward(grad_middle)
    reference = get_module("torch", MODULE).DDPMStep(tree_schedule(get_module("torch", MODULE), "float64"))
    leaves = [torch.tensor(a, requires_grad=True) for a in (*model_outputs, x, *noises)]
    m0, m1, xt, z0, z1 = leaves
    out, _ = reference(m1, 5, reference(m0, 6, xt, z0)[0], z1)
    (out * torch.from_numpy(cotangent)).sum().backward()
    failures = []
    for name, ours, leaf in (("model_output 1", grad_m0, m0), ("model_output 2", grad_m1, m1), ("x", grad_x, xt),
                             ("noise 1", grad_z0, z0), ("noise 2", grad_z1, z1)):
        compare_tensors(name, "numpy twice vs torch autograd", ours, leaf.grad.numpy(), "float64", failures)
    assert_no_failures(failures, "used twice")


# --- the sampling loop, with a tiny seeded conv model --------------------------------------------

#: The stand-in noise predictor's images: 2 channels, 4x4 (any model callable works; the day-38
#: U-Net is timed in benchmarks/bench_sampling.py, and is too slow for a fast test on 2 cores).
IMAGE = (2, 4, 4)
NUM_CLASSES = 3


def tree_models(dtype: str = "float64") -> dict:
    """Per tree, ``model(x, timesteps, labels)``: one 3x3 convolution (the same seeded weights in every
    tree, day 14's ``Conv2d``) scaled by ``1 + t/T``, plus ``0.1 * label`` (the null label included)."""
    convs = {tree: get_module(tree, "foundations.conv").Conv2d(IMAGE[0], IMAGE[0], 3, padding=1, dtype=dtype,
                                                               rng=np.random.default_rng(0)) for tree in TREES}
    for tree in ("torch", "tf"):
        convs[tree].load_canonical_state_dict(convs["numpy"].canonical_state_dict())
    cast = {"numpy": lambda a: a.astype(dtype), "torch": lambda a: a.to(getattr(torch, dtype)),
            "tf": lambda a: tf.cast(a, dtype)}

    def model_of(tree):
        def model(x, timesteps, labels):
            scale = 1 + cast[tree](timesteps)[:, None, None, None] / T  # (N, 1, 1, 1)
            shift = 0 if labels is None else 0.1 * cast[tree](labels)[:, None, None, None]  # (N, 1, 1, 1)
            return convs[tree](x) * scale + shift  # (N, C, H, W) or (N, H, W, C)
        return model

    return {tree: model_of(tree) for tree in TREES}


def to_tree(tree: str, x: np.ndarray):
    """An NCHW array as the tree's tensor (NHWC for TF)."""
    return tf.constant(nchw_to_nhwc(x)) if tree == "tf" else TENSOR[tree](x)


def from_tree(tree: str, x) -> np.ndarray:
    return nhwc_to_nchw(np.asarray(x)) if tree == "tf" else np.asarray(x)


def test_ddpm_sample_same_images_in_every_tree_and_diffusers():
    """The whole T-step chain from one x_T, one model's weights and the noise diffusers' generator
    draws (one per t > 0, in order): the same images in every tree and in diffusers' loop."""
    shape = (2, *IMAGE)
    x_T = np.random.default_rng(10).standard_normal(shape)
    labels = np.array([0, 2], np.int64)
    generator = torch.Generator().manual_seed(12)
    noises = [torch.randn(shape, generator=generator, dtype=torch.float64).numpy() for _ in range(T - 1)]
    models = tree_models()
    images = {}
    for tree in TREES:
        topic = get_module(tree, MODULE)
        images[tree] = from_tree(tree, topic.ddpm_sample(models[tree], to_tree(tree, x_T),
                                                         [to_tree(tree, z) for z in noises],
                                                         tree_schedule(topic, "float64"), TENSOR[tree](labels)))
    scheduler, sample = diffusers_ddpm_scheduler("float64"), torch.from_numpy(x_T)
    generator = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_output = models["torch"](sample, torch.full((2,), int(t)), torch.from_numpy(labels))
            sample = scheduler.step(model_output, t, sample, generator=generator).prev_sample
    images["diffusers"] = sample.numpy()
    failures = []
    for name in ("torch", "tf", "diffusers"):
        compare_tensors("x_0", f"numpy vs {name}", images["numpy"], images[name], "float64", failures)
    assert_no_failures(failures, f"{T}-step DDPM sampling")
    assert np.abs(images["numpy"]).max() > 0.1


def test_ddpm_sample_takes_noise_from_a_generator():
    """``noises`` may be any iterable: a generator drawing each noise lazily gives the same images."""
    rng = np.random.default_rng(13)
    x_T, noises = rng.standard_normal((2, 3)), [rng.standard_normal((2, 3)) for _ in range(T - 1)]
    topic = get_module("numpy", MODULE)
    schedule = tree_schedule(topic, "float64")
    model = lambda x, timesteps, labels: 0.1 * x + 0.01 * timesteps[:, None]
    listed = topic.ddpm_sample(model, x_T, noises, schedule)
    lazy = topic.ddpm_sample(model, x_T, (z for z in noises), schedule)
    np.testing.assert_array_equal(listed, lazy)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variance_type=st.sampled_from(VARIANCE_TYPES), prediction_type=st.sampled_from(PREDICTION_TYPES),
       clip_sample=st.booleans(), timestep=st.integers(0, T - 1), batch=st.integers(1, 3),
       sample_shape=st.lists(st.integers(1, 3), min_size=1, max_size=2))
def test_fuzz(variance_type, prediction_type, clip_sample, timestep, batch, sample_shape):
    """Random configurations and sample shapes (diffusers reads ``shape[1]``: at least 2-d): every tree
    and diffusers agree, gradients included."""
    check_parity(step_case(variance_type, clip_sample, prediction_type, timestep, (batch, *sample_shape)), "float64")


# --- errors -----------------------------------------------------------------------------------------

#: (keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "unknown variance type": ({"variance_type": "learned"}, ValueError,
                              "DDPMStep: variance_type must be one of ('fixed_small', 'fixed_small_log', 'fixed_large', "
                              "'fixed_large_log'), got 'learned'"),
    "unknown prediction type": ({"prediction_type": "noise"}, ValueError,
                                "DDPMStep: prediction_type must be one of ('epsilon', 'sample', 'v_prediction'), "
                                "got 'noise'"),
    "zero clip range": ({"clip_sample_range": 0.0}, ValueError, "DDPMStep: clip_sample_range must be > 0, got 0.0"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    kwargs, error, message = BAD_ARGUMENTS[what]
    topic = get_module(tree, MODULE)
    assert_raises_exactly(error, message, lambda: topic.DDPMStep(tree_schedule(topic, "float64"), **kwargs))


Z = np.zeros((2, 3))
#: (model_output, timestep, sample, noise, exception, message): every tree raises exactly this in forward.
BAD_INPUTS = {
    "timestep too large": (Z, T, Z, Z, ValueError, f"DDPMStep: timestep must lie in [0, {T}), got {T}"),
    "negative timestep": (Z, -1, Z, Z, ValueError, f"DDPMStep: timestep must lie in [0, {T}), got -1"),
    "float timestep": (Z, 2.0, Z, Z, TypeError, "DDPMStep: timestep must be an int (or a 0-d int64 tensor), got 2.0"),
    "noise of another shape": (Z, 3, Z, np.zeros((2, 4)), ValueError, "DDPMStep: noise must have shape (2, 3), got (2, 4)"),
    "no noise where it is added": (Z, 3, Z, None, ValueError,
                                   "DDPMStep: this step adds noise, so noise (shaped like sample) must be given, got None"),
    "model_output of another shape": (np.zeros((2, 2)), 3, Z, Z, ValueError,
                                      "DDPMStep: model_output must have shape (2, 3), got (2, 2)"),
    "float32 sample": (Z, 3, Z.astype(np.float32), Z, TypeError,
                       "DDPMStep: sample must have dtype float64, got float32 (cast it explicitly)"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_INPUTS))
def test_bad_inputs_raise_one_clear_error(what, tree):
    model_output, timestep, sample, noise, error, message = BAD_INPUTS[what]
    topic = get_module(tree, MODULE)
    to = TENSOR[tree]
    assert_raises_exactly(error, message, lambda: topic.ddpm_step(
        to(model_output), timestep, to(sample), None if noise is None else to(noise), tree_schedule(topic, "float64")))


@pytest.mark.parametrize("tree", TREES)
def test_too_few_noises_raise_one_clear_error(tree):
    topic = get_module(tree, MODULE)
    to = TENSOR[tree]
    assert_raises_exactly(ValueError, f"ddpm_sample: noises must hold {T - 1} tensors (one per noisy step), got 2",
                          lambda: topic.ddpm_sample(lambda x, t, labels: x, to(Z), [to(Z)] * 2,
                                                    tree_schedule(topic, "float64")))


@pytest.mark.parametrize("tree", TREES)
def test_loss_refuses_a_prediction_of_another_shape(tree):
    topic = get_module(tree, MODULE)
    to = TENSOR[tree]
    loss = topic.DDPMLoss(tree_schedule(topic, "float64"))
    assert_raises_exactly(ValueError, "DDPMLoss: model_output must have shape (2, 3), got (2, 4)",
                          lambda: loss(to(np.zeros((2, 4))), to(Z), to(Z), to(np.array([1, 2]))))
