"""Days 9-10: the options torch users reach for — ``SGD(dampening)``, ``RMSprop(centered)``,
``Adam``/``AdamW(amsgrad)`` — as trajectories against ``torch.optim`` (and Keras where it has the
same thing), their argument checks, and the dict of named parameters every tree's optimizer takes.

The problem and the trajectory machinery are ``test_optim``'s (a ``Linear(5, 3)`` trained on an MSE
through each tree's own ``Trainer``); each option is also shown to change the trajectory, so the
parity compares something.
"""
import keras
import numpy as np
import pytest
import torch

from parity_tests.foundations.test_optim import (BETAS, STEPS, keras_optimizer_reference, optimizer_trajectory, problem,
                                                 torch_optim_reference, tree_linear, tree_optimizer)
from parity_tests.harness import TREES, check_trajectory, max_errors

# name -> (class, kwargs with the option, the same kwargs without it)
CONFIGS = {
    "SGD-dampening": ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3), dict(lr=0.1, momentum=0.9)),
    "SGD-dampening-weight-decay": ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.05),
                                   dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
    "RMSprop-centered": ("RMSprop", dict(lr=0.01, centered=True), dict(lr=0.01)),
    "RMSprop-centered-momentum-weight-decay": ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.05, centered=True),
                                               dict(lr=0.01, momentum=0.9, weight_decay=0.05)),
    "Adam-amsgrad": ("Adam", dict(lr=0.05, amsgrad=True), dict(lr=0.05)),
    "Adam-amsgrad-weight-decay": ("Adam", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.05, amsgrad=True),
                                  dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.05)),
    "AdamW-amsgrad": ("AdamW", dict(lr=0.05, weight_decay=0.1, amsgrad=True), dict(lr=0.05, weight_decay=0.1)),
}

# Keras has AMSGrad and centered RMSprop (not dampening). Its epsilon sits elsewhere (inside the
# root for RMSprop, before the bias correction for Adam: test_optim proves both), so eps = 0 on
# both sides, and hyperparameters exact in float32, which Keras rounds them to.
KERAS_CONFIGS = {
    "Adam-amsgrad": ("Adam", dict(lr=2**-5, betas=BETAS, eps=0.0, amsgrad=True),
                     lambda: keras.optimizers.Adam(2**-5, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=0.0, amsgrad=True)),
    "RMSprop-centered": ("RMSprop", dict(lr=2**-6, alpha=0.875, eps=0.0, centered=True),
                         lambda: keras.optimizers.RMSprop(2**-6, rho=0.875, epsilon=0.0, centered=True)),
    "RMSprop-centered-momentum": ("RMSprop", dict(lr=2**-6, alpha=0.875, eps=0.0, momentum=0.875, centered=True),
                                  lambda: keras.optimizers.RMSprop(2**-6, rho=0.875, momentum=0.875, epsilon=0.0, centered=True)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS)
def test_option_trajectory_parity_and_torch_optim(config, dtype):
    cls, kwargs, _ = CONFIGS[config]
    trajectory = optimizer_trajectory(cls, kwargs, {f"torch.optim.{cls}": torch_optim_reference(cls, kwargs)})
    check_trajectory(trajectory, dtype, f"{config} trajectory over {STEPS} steps")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", KERAS_CONFIGS)
def test_option_trajectory_matches_keras(config, dtype):
    cls, kwargs, make_optimizer = KERAS_CONFIGS[config]
    trajectory = optimizer_trajectory(cls, kwargs, {f"keras.optimizers.{cls}": keras_optimizer_reference(make_optimizer, 0.0)})
    check_trajectory(trajectory, dtype, f"{config} vs Keras over {STEPS} steps")


def final_state(cls, kwargs):
    trajectory = optimizer_trajectory(cls, kwargs)
    state = trajectory.start("numpy", "float64")
    return [trajectory.step(state, t) for t in range(1, STEPS + 1)][-1]


@pytest.mark.parametrize("config", CONFIGS)
def test_each_option_changes_the_trajectory(config):
    """Without the option the same problem ends elsewhere (by far more than the float64 tolerance),
    so the parity above really exercises dampening, centering and the AMSGrad maximum."""
    cls, with_option, without = CONFIGS[config]
    a, b = final_state(cls, with_option), final_state(cls, without)
    assert max(max_errors(a[name], b[name])[1] for name in a) > 1e-4, config


def test_amsgrad_keeps_the_largest_second_moment():
    """The state holds torch's ``max_exp_avg_sq``: the running maximum of ``exp_avg_sq``, never below it."""
    x, y, weights = problem("float64")
    model = tree_linear("numpy", "float64", weights)
    optimizer = tree_optimizer("numpy", "Adam", dict(model.named_parameters()), dict(lr=0.05, amsgrad=True))
    for _ in range(STEPS):
        model.zero_grad()
        residual = model(x) - y  # (B, OUT)
        model.backward(2 * residual / residual.size)
        optimizer.step(dict(model.named_grads()))
        for state in optimizer.state.values():
            assert np.all(state["max_exp_avg_sq"] >= state["exp_avg_sq"])
    assert any(np.any(s["max_exp_avg_sq"] > s["exp_avg_sq"]) for s in optimizer.state.values())


# --- params: a dict of canonical names, as every tree's optimizer takes it ---

def params_message(kind):
    """The one message of every tree, as a regex, for params of type ``kind``."""
    return (r"Adam: params must be a dict \{canonical name: parameter\}, got " + kind +
            r"; pass dict\(model.named_parameters\(\)\), not model.parameters\(\)")


def torch_style_params(model, style):
    """How torch users hand parameters to ``torch.optim``: an iterator, a list, param groups."""
    values = list(dict(model.named_parameters()).values())
    return {
        "generator": (p for p in values),
        "list": values,
        "list_iterator": iter(values),
        "param groups": [{"params": values}],
        "named_parameters()": model.named_parameters(),
    }[style]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("style", ["generator", "list", "list_iterator", "param groups", "named_parameters()"])
def test_torch_style_params_get_one_clear_type_error(tree, style):
    model = tree_linear(tree, "float64", problem("float64")[2])
    params = torch_style_params(model, style)
    kind = {"param groups": "list", "named_parameters()": "generator"}.get(style, style)
    with pytest.raises(TypeError, match=params_message(kind)):
        tree_optimizer(tree, "Adam", params, {})


def test_torch_tree_refuses_model_parameters():
    """Exactly what a torch user writes first: ``Adam(model.parameters())``."""
    model = tree_linear("torch", "float64", problem("float64")[2])
    with pytest.raises(TypeError, match=params_message("generator")):
        tree_optimizer("torch", "Adam", model.parameters(), {})
    # The reference accepts it; the message says what to write instead, and that works.
    torch.optim.Adam(model.parameters())
    tree_optimizer("torch", "Adam", dict(model.named_parameters()), {})


BAD_OPTION_ARGUMENTS = [
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=-0.1), ValueError, r"SGD: dampening must be in \[0, 1\], got -0.1"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=1.5), ValueError, r"SGD: dampening must be in \[0, 1\], got 1.5"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening="0.1"), TypeError, r"SGD: dampening must be a real number, got '0.1'"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     r"SGD: nesterov=True needs momentum > 0 and dampening = 0"),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov="yes"), TypeError, r"SGD: nesterov must be a bool \(True or False\), got 'yes'"),
    ("RMSprop", dict(centered=1), TypeError, r"RMSprop: centered must be a bool \(True or False\), got 1"),
    ("Adam", dict(amsgrad="False"), TypeError, r"Adam: amsgrad must be a bool \(True or False\), got 'False'"),
    ("AdamW", dict(amsgrad=None), TypeError, r"AdamW: amsgrad must be a bool \(True or False\), got None"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("cls, kwargs, error, message", BAD_OPTION_ARGUMENTS)
def test_bad_option_arguments_raise_one_clear_error(tree, cls, kwargs, error, message):
    model = tree_linear(tree, "float64", problem("float64")[2])
    with pytest.raises(error, match=message):
        tree_optimizer(tree, cls, dict(model.named_parameters()), kwargs)
