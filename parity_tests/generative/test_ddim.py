"""Day 40: the DDIM step, its timesteps, classifier-free guidance and the DDIM sampling loop in three
trees, against ``diffusers.DDIMScheduler``.

The reference is ``DDIMScheduler`` fed our schedule (:func:`diffusers_ddim_scheduler`: ``alphas_cumprod``
replaced by day 37's float64 recomputation cast to the dtype, and ``final_alpha_cumprod`` recomputed from
it, since the constructor froze the float32 one); its ``step`` takes the noise as ``variance_noise``, so
nothing needs replacing. The timestep lists (``ml100.schedules.ddim_timesteps``) are compared exactly
with ``set_timesteps``. Guidance is compared with the formula diffusers' pipelines write. Keras has no
diffusion scheduler: there is no Keras reference.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml100.backends import get_module
from ml100.schedules import PREDICTION_TYPES, TIMESTEP_SPACINGS, ddim_timesteps
from parity_tests.generative.test_ddpm import (IMAGE, NUM_CLASSES, SCHEDULE, T, TENSOR, X_SHAPE, from_tree, step_inputs,
                                               to_tree, tree_models, tree_schedule)
from parity_tests.generative.test_diffusion_schedule import diffusers_float64_alphas_cumprod
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_tensors,
                                  gradcheck_numpy, run_torch)

MODULE = "generative.ddim"
#: Inference steps of the step cases: prev = t - T // 5 = t - 2.
STEPS = 5


def diffusers_ddim_scheduler(dtype: str, num_inference_steps: int = STEPS, steps: int = T, **config):
    """The conversion fed to the reference: ``DDIMScheduler`` with our schedule (float64 recomputation
    cast to ``dtype``) and ``final_alpha_cumprod`` recomputed from it, timesteps set."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=steps, beta_schedule=SCHEDULE, **config)
    scheduler.alphas_cumprod = diffusers_float64_alphas_cumprod(SCHEDULE, steps).to(getattr(torch, dtype))
    set_alpha_to_one = config.get("set_alpha_to_one", True)
    scheduler.final_alpha_cumprod = (torch.tensor(1.0, dtype=getattr(torch, dtype)) if set_alpha_to_one
                                     else scheduler.alphas_cumprod[0])
    scheduler.set_timesteps(num_inference_steps)
    return scheduler


def diffusers_step_reference(eta, clip_sample, set_alpha_to_one, prediction_type):
    """``DDIMScheduler.step(model_output, timestep, sample, eta, variance_noise=noise)``."""
    def run(state, inputs, cotangents, dtype):
        scheduler = diffusers_ddim_scheduler(dtype, clip_sample=clip_sample, set_alpha_to_one=set_alpha_to_one,
                                             prediction_type=prediction_type)

        def step(model_output, timestep, sample, noise):
            return scheduler.step(model_output, int(timestep), sample, eta=eta, variance_noise=noise, return_dict=False)

        return run_torch(step, inputs, ("model_output", "sample", "noise"), cotangents, params={})

    return run


def step_case(eta=0.0, clip_sample=True, set_alpha_to_one=True, prediction_type="epsilon", timestep=T // 2,
              shape=X_SHAPE):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.DDIMStep(tree_schedule(m, dtype), STEPS, eta, clip_sample, 1.0, set_alpha_to_one,
                                               prediction_type),
        inputs=step_inputs(shape, timestep),
        differentiable=("model_output", "sample", "noise"),
        output_names=("prev_sample", "pred_original_sample"),
        references={"diffusers.DDIMScheduler.step": diffusers_step_reference(eta, clip_sample, set_alpha_to_one,
                                                                             prediction_type)},
        batch_axes={"timestep": None},
    )


#: (eta, clip_sample, set_alpha_to_one, prediction_type, timestep): eta 0 and > 0 with the clip on and
#: off; every prediction type; the last step (timestep 1 -> -1) with and without set_alpha_to_one.
STEP_GRID = [(0.0, True, True, "epsilon", 9), (0.0, False, True, "sample", 5), (0.0, True, False, "v_prediction", 1),
             (0.5, True, True, "epsilon", 5), (1.0, False, False, "v_prediction", 1), (0.7, True, True, "sample", 8),
             (1.0, True, True, "epsilon", 1), (0.3, False, True, "epsilon", 3)]


@pytest.mark.parametrize("eta, clip_sample, set_alpha_to_one, prediction_type, timestep", STEP_GRID)
def test_step_parity_float64(eta, clip_sample, set_alpha_to_one, prediction_type, timestep):
    """prev_sample, pred_original_sample and the gradients of model_output, sample and noise in every
    tree and diffusers; special values and the empty batch too."""
    check_parity(step_case(eta, clip_sample, set_alpha_to_one, prediction_type, timestep), "float64")


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_step_parity_float32(prediction_type, eta):
    check_parity(step_case(eta, True, True, prediction_type, T - 3), "float32")


def test_every_step_configuration_matches_diffusers():
    """Forward, every eta in (0, 0.5, 1) x clip x set_alpha_to_one x prediction type x the timesteps
    that matter (the last two steps past the end, 0 and 1, then 2, the middle and T - 1): each tree's
    outputs equal diffusers' in float64."""
    rng = np.random.default_rng(5)
    model_output, sample, noise = (3 * rng.standard_normal(X_SHAPE) for _ in range(3))
    schedules = {tree: tree_schedule(get_module(tree, MODULE), "float64") for tree in TREES}
    failures = []
    for eta in (0.0, 0.5, 1.0):
        for clip_sample in (True, False):
            for set_alpha_to_one in (True, False):
                for prediction_type in PREDICTION_TYPES:
                    scheduler = diffusers_ddim_scheduler("float64", clip_sample=clip_sample,
                                                         set_alpha_to_one=set_alpha_to_one,
                                                         prediction_type=prediction_type)
                    for t in (0, 1, 2, T // 2, T - 1):
                        expected = scheduler.step(torch.from_numpy(model_output), t, torch.from_numpy(sample), eta=eta,
                                                  variance_noise=torch.from_numpy(noise), return_dict=False)
                        for tree in TREES:
                            to = TENSOR[tree]
                            got = get_module(tree, MODULE).ddim_step(
                                to(model_output), t, to(sample), to(noise), schedules[tree], STEPS, eta, clip_sample,
                                1.0, set_alpha_to_one, prediction_type)
                            what = f"{tree} vs diffusers (eta={eta}, clip={clip_sample}, one={set_alpha_to_one}, " \
                                   f"{prediction_type}, t={t})"
                            for name, ours, theirs in zip(("prev_sample", "pred_original_sample"), got, expected):
                                compare_tensors(name, what, np.asarray(ours), theirs.numpy(), "float64", failures)
    assert_no_failures(failures, "every DDIM step configuration")


@pytest.mark.parametrize("eta, clip_sample, set_alpha_to_one, prediction_type, timestep",
                         [(0.0, True, True, "epsilon", 5), (0.5, False, False, "sample", 1),
                          (1.0, True, True, "v_prediction", 9), (0.5, True, True, "sample", 4)])
def test_step_gradcheck(eta, clip_sample, set_alpha_to_one, prediction_type, timestep):
    """Finite differences of the hand-written DDIM backward (both estimates' paths, the clip's mask)."""
    gradcheck_numpy(step_case(eta, clip_sample, set_alpha_to_one, prediction_type, timestep, shape=(2, 3)))


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_timesteps_match_set_timesteps(spacing):
    """``ddim_timesteps`` is ``DDIMScheduler.set_timesteps``' list exactly, for T = 1000 and T = 10,
    several step counts (dividing T or not) and, for "leading", a ``steps_offset``."""
    from diffusers import DDIMScheduler

    for steps, count, offset in ((1000, 50, 0), (1000, 7, 1), (1000, 1000, 0), (T, 3, 0), (T, 1, 0), (T, T, 1)):
        offset = offset if spacing == "leading" else 0
        scheduler = DDIMScheduler(num_train_timesteps=steps, timestep_spacing=spacing, steps_offset=offset)
        scheduler.set_timesteps(count)
        ours = ddim_timesteps(steps, count, spacing, offset)
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours, scheduler.timesteps.numpy(), err_msg=f"{spacing} T={steps} n={count}")


def test_timesteps_refuse_more_steps_than_trained():
    assert_raises_exactly(ValueError, "ddim_timesteps: num_inference_steps must be <= num_train_timesteps = 10, got 11",
                          lambda: ddim_timesteps(10, 11))


def test_numpy_used_twice_matches_torch_autograd():
    """One NumPy DDIM step module applied twice (eta > 0), backpropagated through both (LIFO caches),
    equals torch autograd through the same chain."""
    rng = np.random.default_rng(9)
    model_outputs = [rng.standard_normal((2, 3)) for _ in range(2)]
    x, noises = rng.standard_normal((2, 3)), [rng.standard_normal((2, 3)) for _ in range(2)]
    cotangent = rng.standard_normal((2, 3))
    step = get_module("numpy", MODULE).DDIMStep(tree_schedule(get_module("numpy", MODULE), "float64"), STEPS, eta=0.5,
                                                prediction_type="sample")
    middle, _ = step(model_outputs[0], 7, x, noises[0])
    step(model_outputs[1], 5, middle, noises[1])
    grad_m1, grad_middle, grad_z1 = step.backward(cotangent)
    grad_m0, grad_x, grad_z0 = step.backward(grad_middle)
    reference = get_module("torch", MODULE).DDIMStep(tree_schedule(get_module("torch", MODULE), "float64"), STEPS,
                                                     eta=0.5, prediction_type="sample")
    m0, m1, xt, z0, z1 = (torch.tensor(a, requires_grad=True) for a in (*model_outputs, x, *noises))
    out, _ = reference(m1, 5, reference(m0, 7, xt, z0)[0], z1)
    (out * torch.from_numpy(cotangent)).sum().backward()
    failures = []
    for name, ours, leaf in (("model_output 1", grad_m0, m0), ("model_output 2", grad_m1, m1), ("x", grad_x, xt),
                             ("noise 1", grad_z0, z0), ("noise 2", grad_z1, z1)):
        compare_tensors(name, "numpy twice vs torch autograd", ours, leaf.grad.numpy(), "float64", failures)
    assert_no_failures(failures, "used twice")


# --- classifier-free guidance -------------------------------------------------------------------------


def guidance_case(guidance_scale, shape=X_SHAPE):
    def inputs(dtype, rng):
        return {"eps_uncond": rng.standard_normal(shape).astype(dtype), "eps_cond": rng.standard_normal(shape).astype(dtype)}

    def pipeline_formula(state, inputs, cotangents, dtype):
        # diffusers' pipelines: noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond).
        return run_torch(lambda u, c: u + guidance_scale * (c - u), inputs, (), cotangents, params={}, forward_only=True)

    return Case(module=MODULE, build=lambda m, dtype, rng: (lambda u, c: m.classifier_free_guidance(u, c, guidance_scale)),
                inputs=inputs, differentiable=(), forward_only=True,
                references={"diffusers pipelines' guidance formula": pipeline_formula})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("guidance_scale", [0.0, 1.0, 3.5])
def test_classifier_free_guidance_parity(guidance_scale, dtype):
    """Forward only (a plain function; its gradients are the scalings 1 - w and w, checked through
    the sampling loop's images)."""
    results = check_parity(guidance_case(guidance_scale), dtype)
    if guidance_scale == 1.0:
        # Scale 1 gives the conditional prediction back (up to the rounding of u + (c - u)).
        failures = []
        eps_cond = guidance_case(1.0).inputs(dtype, np.random.default_rng(2))["eps_cond"]
        compare_tensors("guided", "w = 1 vs eps_cond", results["numpy"].outputs[0], eps_cond, dtype, failures)
        assert_no_failures(failures, "guidance scale 1")


# --- the sampling loop -------------------------------------------------------------------------------------


def diffusers_ddim_loop(model, x_T, labels, eta, noises, guidance_scale, spacing):
    """diffusers' loop: ``set_timesteps``, the model (twice under guidance, the pipelines' formula), ``step``."""
    scheduler = diffusers_ddim_scheduler("float64", STEPS, timestep_spacing=spacing)
    sample = torch.from_numpy(x_T)
    labels, null = torch.from_numpy(labels), torch.full((x_T.shape[0],), NUM_CLASSES)
    with torch.no_grad():
        for k, t in enumerate(scheduler.timesteps):
            timesteps = torch.full((x_T.shape[0],), int(t))
            eps = model(sample, timesteps, labels)
            if guidance_scale != 1.0:
                eps_uncond = model(sample, timesteps, null)
                eps = eps_uncond + guidance_scale * (eps - eps_uncond)
            noise = None if eta == 0 else torch.from_numpy(noises[k])
            sample = scheduler.step(eps, t, sample, eta=eta, variance_noise=noise).prev_sample
    return sample.numpy()


@pytest.mark.parametrize("eta, guidance_scale, spacing", [(0.0, 3.0, "leading"), (0.8, 2.0, "trailing"),
                                                          (0.0, 1.0, "linspace")])
def test_ddim_sample_same_images_in_every_tree_and_diffusers(eta, guidance_scale, spacing):
    """A 5-step DDIM chain (eta 0 and > 0, with and without guidance, each spacing) from one x_T and
    one model's weights: the same images in every tree and in diffusers' loop."""
    shape = (2, *IMAGE)
    rng = np.random.default_rng(10)
    x_T, labels = rng.standard_normal(shape), np.array([0, 2], np.int64)
    noises = [rng.standard_normal(shape) for _ in range(STEPS)]
    timesteps = ddim_timesteps(T, STEPS, spacing)
    models = tree_models()
    images = {}
    for tree in TREES:
        topic = get_module(tree, MODULE)
        images[tree] = from_tree(tree, topic.ddim_sample(
            models[tree], to_tree(tree, x_T), timesteps, eta, None if eta == 0 else [to_tree(tree, z) for z in noises],
            tree_schedule(topic, "float64"), TENSOR[tree](labels), guidance_scale, NUM_CLASSES))
    images["diffusers"] = diffusers_ddim_loop(models["torch"], x_T, labels, eta, noises, guidance_scale, spacing)
    failures = []
    for name in ("torch", "tf", "diffusers"):
        compare_tensors("x_0", f"numpy vs {name}", images["numpy"], images[name], "float64", failures)
    assert_no_failures(failures, f"{STEPS}-step DDIM sampling")


def test_guidance_changes_the_images():
    """Guidance 1 is the conditional model alone; any other scale moves the images (the null class is used)."""
    rng = np.random.default_rng(11)
    x_T, labels = rng.standard_normal((2, *IMAGE)), np.array([1, 2], np.int64)
    topic = get_module("numpy", MODULE)
    model = tree_models()["numpy"]
    sample = lambda scale: topic.ddim_sample(model, x_T, ddim_timesteps(T, STEPS), 0.0, None,
                                             tree_schedule(topic, "float64"), labels, scale, NUM_CLASSES)
    assert not np.allclose(sample(1.0), sample(4.0))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(eta=st.sampled_from([0.0, 0.5, 1.0]), prediction_type=st.sampled_from(PREDICTION_TYPES),
       clip_sample=st.booleans(), set_alpha_to_one=st.booleans(), timestep=st.integers(0, T - 1),
       batch=st.integers(1, 3), sample_shape=st.lists(st.integers(1, 3), max_size=2))
def test_fuzz(eta, prediction_type, clip_sample, set_alpha_to_one, timestep, batch, sample_shape):
    """Random configurations and sample shapes: every tree and diffusers agree, gradients included."""
    check_parity(step_case(eta, clip_sample, set_alpha_to_one, prediction_type, timestep, (batch, *sample_shape)),
                 "float64")


# --- errors ------------------------------------------------------------------------------------------------

#: (keyword arguments, exception, message): every tree raises exactly this at construction.
BAD_ARGUMENTS = {
    "too many inference steps": ({"num_inference_steps": T + 1}, ValueError,
                                 f"DDIMStep: num_inference_steps must be <= num_train_timesteps = {T}, got {T + 1}"),
    "zero inference steps": ({"num_inference_steps": 0}, ValueError,
                             "DDIMStep: num_inference_steps must be an int >= 1, got 0"),
    "negative eta": ({"num_inference_steps": STEPS, "eta": -0.5}, ValueError,
                     "DDIMStep: eta must be a real number >= 0, got -0.5"),
    "unknown prediction type": ({"num_inference_steps": STEPS, "prediction_type": "noise"}, ValueError,
                                "DDIMStep: prediction_type must be one of ('epsilon', 'sample', 'v_prediction'), "
                                "got 'noise'"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    kwargs, error, message = BAD_ARGUMENTS[what]
    topic = get_module(tree, MODULE)
    assert_raises_exactly(error, message, lambda: topic.DDIMStep(tree_schedule(topic, "float64"), **kwargs))


Z = np.zeros((2, 3))
#: (model_output, timestep, sample, noise, eta, exception, message): every tree raises exactly this.
BAD_INPUTS = {
    "timestep too large": (Z, T, Z, None, 0.0, ValueError, f"DDIMStep: timestep must lie in [0, {T}), got {T}"),
    "noise of another shape": (Z, 3, Z, np.zeros((3, 3)), 0.5, ValueError,
                               "DDIMStep: noise must have shape (2, 3), got (3, 3)"),
    "no noise with eta > 0": (Z, 3, Z, None, 0.5, ValueError,
                              "DDIMStep: this step adds noise, so noise (shaped like sample) must be given, got None"),
    "1-d timestep": (Z, np.array([3]), Z, None, 0.0, TypeError,
                     "DDIMStep: timestep must be an int (or a 0-d int64 tensor), got array([3])"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_INPUTS))
def test_bad_inputs_raise_one_clear_error(what, tree):
    model_output, timestep, sample, noise, eta, error, message = BAD_INPUTS[what]
    topic = get_module(tree, MODULE)
    to = TENSOR[tree]
    assert_raises_exactly(error, message, lambda: topic.ddim_step(
        to(model_output), timestep, to(sample), None if noise is None else to(noise), tree_schedule(topic, "float64"),
        STEPS, eta))


@pytest.mark.parametrize("tree", TREES)
def test_guidance_needs_labels_and_a_null_label(tree):
    topic = get_module(tree, MODULE)
    to = TENSOR[tree]
    assert_raises_exactly(ValueError, "ddim_sample: guidance_scale != 1 needs labels and null_label (the unconditional "
                                      "class id)",
                          lambda: topic.ddim_sample(lambda x, t, labels: x, to(Z), [3, 1], 0.0, None,
                                                    tree_schedule(topic, "float64"), guidance_scale=2.0))


@pytest.mark.parametrize("tree", TREES)
def test_guidance_refuses_predictions_of_different_shapes(tree):
    to = TENSOR[tree]
    assert_raises_exactly(ValueError, "classifier_free_guidance: eps_cond must have shape (2, 3), got (2, 4)",
                          lambda: get_module(tree, MODULE).classifier_free_guidance(to(Z), to(np.zeros((2, 4))), 2.0))
