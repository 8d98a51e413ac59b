"""Days 9-10: optimizers in three trees, against ``torch.optim`` and ``keras.optimizers`` trajectories.

The problem: a ``Linear(5, 3)`` from ``foundations.linear`` in each tree, loaded with one canonical
set of weights, trained on ``mean((linear(x) - y)**2)`` for a fixed random ``(x, y)`` through the
tree's own ``Trainer`` and ``MSELoss``. Each tree computes its own gradients (NumPy by the layer's
hand-written ``backward``, torch by autograd, TF by ``tf.GradientTape``) and its own optimizer
steps them; after every step every parameter is compared across the trees and against the
framework's ready-made optimizer fed the same problem (the harness's ``check_trajectory``).
"""
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from ml100.backends import get_module
from parity_tests.harness import TOLERANCES, TREES, Trajectory, check_trajectory, max_errors, random_weights, to_tree

IN, OUT, BATCH, STEPS = 5, 3, 8, 20

# name -> (class, kwargs): every tree and torch.optim.<class>(**kwargs) run each of these.
CONFIGS = {
    "SGD": ("SGD", dict(lr=0.1)),
    "SGD-momentum": ("SGD", dict(lr=0.1, momentum=0.9)),
    "SGD-nesterov": ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    "SGD-momentum-weight-decay": ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
    "Adagrad": ("Adagrad", dict(lr=0.1)),
    "Adagrad-initial-accumulator-weight-decay": ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.1, weight_decay=0.05)),
    "RMSprop": ("RMSprop", dict(lr=0.01)),
    "RMSprop-momentum-weight-decay": ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.05)),
    "Adam": ("Adam", dict(lr=0.05)),
    "Adam-weight-decay": ("Adam", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.05)),
    "AdamW": ("AdamW", dict(lr=0.05, weight_decay=0.1)),
}

# Keras casts lr, SGD's momentum, Adam's betas (in the bias correction) and weight_decay to
# float32 before using them (test_keras_rounds_hyperparameters_to_float32), so the Keras
# comparisons use values exact in float32. Where Keras's formula differs from torch's, both sides
# are configured so the math is the same: epsilon 0 where its placement differs (Adagrad, RMSprop,
# Adam), rho / initial accumulator set explicitly, and an L2 term added to the gradient Keras sees
# (its weight_decay is always decoupled).
BETAS = (0.875, 1 - 2**-10)
# name -> (class, our kwargs, keras optimizer factory, L2 coefficient added to Keras's gradient)
KERAS_CONFIGS = {
    "SGD": ("SGD", dict(lr=0.125), lambda: keras.optimizers.SGD(0.125), 0.0),
    "SGD-momentum": ("SGD", dict(lr=0.125, momentum=0.875), lambda: keras.optimizers.SGD(0.125, momentum=0.875), 0.0),
    "SGD-nesterov": ("SGD", dict(lr=0.125, momentum=0.875, nesterov=True),
                     lambda: keras.optimizers.SGD(0.125, momentum=0.875, nesterov=True), 0.0),
    "SGD-momentum-l2": ("SGD", dict(lr=0.125, momentum=0.875, weight_decay=0.0625),
                        lambda: keras.optimizers.SGD(0.125, momentum=0.875), 0.0625),
    "Adagrad": ("Adagrad", dict(lr=0.25, eps=0.0, initial_accumulator_value=0.125),
                lambda: keras.optimizers.Adagrad(0.25, initial_accumulator_value=0.125, epsilon=0.0), 0.0),
    "RMSprop": ("RMSprop", dict(lr=2**-6, alpha=0.875, eps=0.0), lambda: keras.optimizers.RMSprop(2**-6, rho=0.875, epsilon=0.0), 0.0),
    "RMSprop-momentum": ("RMSprop", dict(lr=2**-6, alpha=0.875, eps=0.0, momentum=0.875),
                         lambda: keras.optimizers.RMSprop(2**-6, rho=0.875, momentum=0.875, epsilon=0.0), 0.0),
    "Adam": ("Adam", dict(lr=2**-5, betas=BETAS, eps=0.0),
             lambda: keras.optimizers.Adam(2**-5, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=0.0), 0.0),
    "Adam-l2": ("Adam", dict(lr=2**-5, betas=BETAS, eps=0.0, weight_decay=0.0625),
                lambda: keras.optimizers.Adam(2**-5, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=0.0), 0.0625),
    "AdamW": ("AdamW", dict(lr=2**-5, betas=BETAS, eps=0.0, weight_decay=0.0625),
              lambda: keras.optimizers.AdamW(2**-5, weight_decay=0.0625, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=0.0), 0.0),
}


def problem(dtype):
    """Fixed data and one canonical set of weights (non-zero bias) for the Linear(5, 3) problem."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, IN)).astype(dtype)  # (B, IN)
    y = rng.standard_normal((BATCH, OUT)).astype(dtype)  # (B, OUT)
    weights = {"weight": np.zeros((OUT, IN), dtype), "bias": np.zeros((OUT,), dtype)}
    return x, y, random_weights(weights, rng)


def tree_linear(tree, dtype, weights):
    model = get_module(tree, "foundations.linear").Linear(IN, OUT, dtype=dtype, rng=np.random.default_rng(1))
    model.load_canonical_state_dict(weights)
    return model


def tree_optimizer(tree, cls, params, kwargs):
    return getattr(get_module(tree, "foundations.optim"), cls)(params, **kwargs)


def optimizer_trajectory(cls, kwargs, references=None) -> Trajectory:
    """The problem trained in every tree through its own ``Trainer`` — forward, ``MSELoss``,
    backward (NumPy's hand-written, torch's autograd, TF's tape), ``optimizer.step`` — with its
    own ``optim.<cls>(**kwargs)``; every parameter is compared after every step."""
    def start(tree, dtype):
        x, y, weights = problem(dtype)
        model = tree_linear(tree, dtype, weights)
        optimizer = tree_optimizer(tree, cls, dict(model.named_parameters()), kwargs)
        loss = get_module(tree, "foundations.losses").MSELoss(dtype=dtype)
        return get_module(tree, "foundations.trainer").Trainer(model, loss, optimizer), x, y

    def step(state, t):
        trainer, x, y = state
        trainer.train_step(x, y)
        assert int(trainer.optimizer.t) == t, "the optimizer counts every step"
        return trainer.model.canonical_state_dict()

    return Trajectory(STEPS, start, step, references or {})


def torch_optim_reference(cls, kwargs):
    """The reference: ``torch.nn.Linear`` + ``torch.optim.<cls>``, the plain torch loop."""
    def start(dtype):
        x, y, weights = problem(dtype)
        layer = torch.nn.Linear(IN, OUT, dtype=getattr(torch, dtype))
        layer.load_state_dict({name: torch.from_numpy(value) for name, value in weights.items()})
        return layer, getattr(torch.optim, cls)(layer.parameters(), **kwargs), torch.from_numpy(x), torch.from_numpy(y)

    def step(state, t):
        layer, optimizer, x, y = state
        optimizer.zero_grad()
        torch.mean((layer(x) - y) ** 2).backward()
        optimizer.step()
        return {name: value.detach().numpy() for name, value in layer.state_dict().items()}

    return start, step


def keras_optimizer_reference(make_optimizer, l2):
    """The reference: ``keras.layers.Dense`` + a ``keras.optimizers`` optimizer, the plain TF loop."""
    def start(dtype):
        x, y, weights = problem(dtype)
        layer = keras.layers.Dense(OUT, dtype=dtype)
        layer.build((None, IN))
        # Keras stores the kernel (in, out): the transpose of the canonical weight.
        layer.kernel.assign(weights["weight"].T)
        layer.bias.assign(weights["bias"])
        return layer, make_optimizer(), tf.constant(x), tf.constant(y)

    def step(state, t):
        layer, optimizer, x, y = state
        variables = [layer.kernel, layer.bias]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x) - y))
        grads = tape.gradient(loss, variables)
        # Keras's weight_decay is decoupled; torch's L2 form is the gradient of the penalty added here.
        grads = [g + l2 * v.value for g, v in zip(grads, variables)]
        optimizer.apply(grads, variables)
        return {"weight": layer.kernel.numpy().T, "bias": layer.bias.numpy()}

    return start, step


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS)
def test_optimizer_trajectory_parity_and_torch_optim(config, dtype):
    cls, kwargs = CONFIGS[config]
    trajectory = optimizer_trajectory(cls, kwargs, {f"torch.optim.{cls}": torch_optim_reference(cls, kwargs)})
    check_trajectory(trajectory, dtype, f"{config} trajectory over {STEPS} steps")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", KERAS_CONFIGS)
def test_optimizer_trajectory_matches_keras(config, dtype):
    cls, kwargs, make_optimizer, l2 = KERAS_CONFIGS[config]
    trajectory = optimizer_trajectory(cls, kwargs, {f"keras.optimizers.{cls}": keras_optimizer_reference(make_optimizer, l2)})
    check_trajectory(trajectory, dtype, f"{config} vs Keras over {STEPS} steps")


def test_trajectories_move_the_loss_down():
    """A sanity check that the parity above compares something: every optimizer lowers the loss."""
    x, y, weights = problem("float64")
    start = np.mean((x @ weights["weight"].T + weights["bias"] - y) ** 2)
    for config, (cls, kwargs) in CONFIGS.items():
        trajectory = optimizer_trajectory(cls, kwargs)
        state = trajectory.start("numpy", "float64")
        final = [trajectory.step(state, t) for t in range(1, STEPS + 1)][-1]
        end = np.mean((x @ final["weight"].T + final["bias"] - y) ** 2)
        assert end < 0.9 * start, f"{config}: loss {start:.4f} -> {end:.4f} after {STEPS} steps"


# --- Where Keras differs from torch: each difference proven on one variable and fixed gradients. ---

def gradient_sequence(steps=5, shape=(4,), seed=3):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(steps)]


def keras_steps(optimizer, p0, grads, lrs=None):
    """Run a Keras optimizer on one float64 variable; returns the variable after each step."""
    variable = keras.Variable(p0.copy(), dtype="float64")
    out = []
    for t, g in enumerate(grads):
        if lrs is not None:
            optimizer.learning_rate = lrs[t]
        optimizer.apply([tf.constant(g)], [variable])
        out.append(variable.numpy().copy())
    return out, optimizer


def numpy_steps(cls, kwargs, p0, grads, before_step=None):
    """Run the NumPy tree's optimizer the same way; ``before_step(optimizer, p, t)`` may intervene."""
    p = p0.copy()
    optimizer = getattr(get_module("numpy", "foundations.optim"), cls)({"p": p}, **kwargs)
    out = []
    for t, g in enumerate(grads, start=1):
        if before_step is not None:
            before_step(optimizer, p, t)
        optimizer.step({"p": g})
        out.append(p.copy())
    return out, optimizer


def max_rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b))))


P0 = np.array([0.5, -1.25, 2.0, -0.75])


def test_keras_adam_epsilon_is_epsilon_hat():
    """Keras adds epsilon to sqrt(v_t) *before* bias correction (Kingma & Ba's "epsilon hat", see the
    keras.optimizers.Adam docstring), torch to sqrt(v_hat_t) after it:

        torch: p -= lr * m_hat / (sqrt(v_hat) + eps)
        keras: p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps_hat)

    so Keras's eps_hat acts as torch's eps = eps_hat / sqrt(1 - b2^t), a different value at every
    step. With a large epsilon the two disagree; giving our (torch-formula) Adam that per-step eps
    reproduces Keras exactly. The trajectory test sets epsilon=0 on both sides."""
    grads, eps_hat, lr = gradient_sequence(), 0.25, 2**-5
    keras_out, _ = keras_steps(keras.optimizers.Adam(lr, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=eps_hat), P0, grads)
    ours, _ = numpy_steps("Adam", dict(lr=lr, betas=BETAS, eps=eps_hat), P0, grads)
    assert max_rel(np.subtract(ours, P0), np.subtract(keras_out, P0)) > 1e-2

    def torch_eps_for_step(optimizer, p, t):
        optimizer.eps = eps_hat / np.sqrt(1 - BETAS[1] ** t)

    matched, _ = numpy_steps("Adam", dict(lr=lr, betas=BETAS, eps=eps_hat), P0, grads, before_step=torch_eps_for_step)
    assert max_rel(matched, keras_out) < TOLERANCES["float64"]


@pytest.mark.parametrize("cls", ["Adagrad", "RMSprop"])
def test_keras_adagrad_and_rmsprop_put_epsilon_inside_the_root(cls):
    """torch divides by sqrt(s) + eps, Keras by sqrt(s + eps) (Adagrad: s the sum of g**2 from
    initial_accumulator_value; RMSprop: s the moving average with rho). With a large epsilon Keras
    equals the inside-the-root formula written out here and differs from ours (torch's)."""
    grads, eps, lr, rho, s0 = gradient_sequence(), 0.25, 0.25, 0.875, 0.125
    if cls == "Adagrad":
        keras_opt = keras.optimizers.Adagrad(lr, initial_accumulator_value=s0, epsilon=eps)
        ours_kwargs = dict(lr=lr, eps=eps, initial_accumulator_value=s0)
        accumulate = lambda s, g: s + g * g
        s = np.full_like(P0, s0)
    else:
        keras_opt = keras.optimizers.RMSprop(lr, rho=rho, epsilon=eps)
        ours_kwargs = dict(lr=lr, alpha=rho, eps=eps)
        accumulate = lambda s, g: rho * s + (1 - rho) * g * g
        s = np.zeros_like(P0)
    keras_out, _ = keras_steps(keras_opt, P0, grads)
    p, inside = P0.copy(), []
    for g in grads:
        s = accumulate(s, g)
        p = p - lr * g / np.sqrt(s + eps)
        inside.append(p)
    assert max_rel(inside, keras_out) < TOLERANCES["float64"]
    ours, _ = numpy_steps(cls, ours_kwargs, P0, grads)
    assert max_rel(np.subtract(ours, P0), np.subtract(keras_out, P0)) > 1e-2


def test_keras_sgd_velocity_is_in_parameter_units():
    """torch keeps b = momentum*b + g and steps p -= lr*b; Keras keeps a velocity
    m = momentum*m - lr*g and steps p += m. With a constant lr, m = -lr*b exactly (so the
    trajectories agree), but when the lr changes Keras's velocity still carries the old lr while
    torch rescales the whole buffer by the new one: under a schedule the two differ."""
    grads, lr, momentum = gradient_sequence(), 0.125, 0.875
    keras_out, keras_opt = keras_steps(keras.optimizers.SGD(lr, momentum=momentum), P0, grads)
    ours, ours_opt = numpy_steps("SGD", dict(lr=lr, momentum=momentum), P0, grads)
    assert max_rel(ours, keras_out) < TOLERANCES["float64"]
    velocity = keras_opt.momentums[0].numpy()
    assert max_rel(velocity, -lr * ours_opt.state["p"]["momentum_buffer"]) < TOLERANCES["float64"]

    # A step schedule: lr 0.125 for two steps, then 0.03125.
    lrs = [0.125, 0.125, 0.03125, 0.03125, 0.03125]
    keras_out, _ = keras_steps(keras.optimizers.SGD(lrs[0], momentum=momentum), P0, grads, lrs=lrs)

    def schedule(optimizer, p, t):
        optimizer.lr = lrs[t - 1]

    ours, _ = numpy_steps("SGD", dict(lr=lrs[0], momentum=momentum), P0, grads, before_step=schedule)
    reference = torch.tensor(P0.copy(), requires_grad=True)
    torch_opt = torch.optim.SGD([reference], lr=lrs[0], momentum=momentum)
    for t, g in enumerate(grads):
        torch_opt.param_groups[0]["lr"] = lrs[t]
        reference.grad = torch.from_numpy(g)
        torch_opt.step()
    assert max_rel(ours[-1], reference.detach().numpy()) < TOLERANCES["float64"]
    assert max_rel(np.subtract(ours, P0), np.subtract(keras_out, P0)) > 1e-2


def test_keras_weight_decay_is_always_decoupled():
    """Keras's ``weight_decay`` argument (on every optimizer) shrinks the variable directly,
    p -= lr * wd * p, before the update; torch's SGD/Adagrad/RMSprop/Adam add wd*p to the gradient
    (L2) and only AdamW decouples. So keras.optimizers.Adam(weight_decay=wd) is AdamW — it matches
    our AdamW and not our Adam(weight_decay=wd) — and Keras's SGD with momentum decays
    outside the momentum buffer. (Keras's AdamW decays before the step from the old weights, as
    torch.optim.AdamW does: no ordering difference, see the AdamW trajectory test.)"""
    grads, wd, lr = gradient_sequence(), 0.25, 2**-5
    keras_adam, _ = keras_steps(keras.optimizers.Adam(lr, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=0.0, weight_decay=wd), P0, grads)
    ours_adamw, _ = numpy_steps("AdamW", dict(lr=lr, betas=BETAS, eps=0.0, weight_decay=wd), P0, grads)
    ours_adam_l2, _ = numpy_steps("Adam", dict(lr=lr, betas=BETAS, eps=0.0, weight_decay=wd), P0, grads)
    assert max_rel(ours_adamw, keras_adam) < TOLERANCES["float64"]
    assert max_rel(np.subtract(ours_adam_l2, P0), np.subtract(keras_adam, P0)) > 1e-2

    lr, momentum = 0.125, 0.875
    keras_sgd, _ = keras_steps(keras.optimizers.SGD(lr, momentum=momentum, weight_decay=wd), P0, grads)

    def decay_first(optimizer, p, t):
        p *= 1 - lr * wd

    decoupled, _ = numpy_steps("SGD", dict(lr=lr, momentum=momentum), P0, grads, before_step=decay_first)
    ours_sgd_l2, _ = numpy_steps("SGD", dict(lr=lr, momentum=momentum, weight_decay=wd), P0, grads)
    assert max_rel(decoupled, keras_sgd) < TOLERANCES["float64"]
    assert max_rel(np.subtract(ours_sgd_l2, P0), np.subtract(keras_sgd, P0)) > 1e-2


def test_keras_rounds_hyperparameters_to_float32():
    """Keras keeps the learning rate in a float32 variable (``backend.floatx()``) and passes
    SGD's momentum, Adam's betas (in the bias correction ``beta**t``) and weight_decay through
    ``ops.cast``, which converts a Python float to a float32 tensor first. On float64 variables
    lr=0.1 therefore acts as float32(0.1) = 0.10000000149…, a 1.5e-8 relative change of every step:
    more than the 1e-9 float64 tolerance. The Keras trajectory tests use values exact in float32."""
    g = np.array([1.0, -2.0, 3.0])
    p0 = np.zeros(3)
    (p1,), _ = keras_steps(keras.optimizers.SGD(0.1), p0, [g])
    np.testing.assert_array_equal(p1, -np.float64(np.float32(0.1)) * g)
    assert max_rel(p1, -0.1 * g) > 1e-8

    # Adam's first step is lr * sign(g) whatever the betas (with eps=0) — unless Keras's bias
    # correction uses float32(beta) while its moving averages use the float64 beta.
    (p1,), _ = keras_steps(keras.optimizers.Adam(0.125, beta_1=0.9, beta_2=0.999, epsilon=0.0), p0, [g])
    exact = -0.125 * np.sign(g)
    b1, b2 = np.float64(np.float32(0.9)), np.float64(np.float32(0.999))
    rounded = -0.125 * np.sqrt(1 - b2) / (1 - b1) * (0.1 * g) / np.sqrt(0.001 * g * g)
    assert max_rel(p1, rounded) < 1e-12
    assert max_rel(p1, exact) > 1e-8


def test_keras_and_torch_defaults_differ():
    """Defaults that silently change results; ours are torch's (asserted) and Keras's are listed."""
    def defaults(fn, *names):
        params = inspect.signature(fn).parameters
        return tuple(params[name].default for name in names)

    optim = get_module("numpy", "foundations.optim")
    for cls, names in {"Adagrad": ("lr", "eps", "initial_accumulator_value"), "RMSprop": ("lr", "alpha", "eps"),
                       "Adam": ("lr", "betas", "eps"), "AdamW": ("lr", "betas", "eps", "weight_decay")}.items():
        assert defaults(getattr(optim, cls), *names) == defaults(getattr(torch.optim, cls), *names), cls
    assert defaults(keras.optimizers.Adagrad, "learning_rate", "epsilon", "initial_accumulator_value") == (0.001, 1e-7, 0.1)
    assert defaults(torch.optim.Adagrad, "lr", "eps", "initial_accumulator_value") == (0.01, 1e-10, 0)
    assert defaults(keras.optimizers.RMSprop, "learning_rate", "rho", "epsilon") == (0.001, 0.9, 1e-7)
    assert defaults(torch.optim.RMSprop, "lr", "alpha", "eps") == (0.01, 0.99, 1e-8)
    assert defaults(keras.optimizers.Adam, "epsilon") == (1e-7,)
    assert defaults(torch.optim.Adam, "eps") == (1e-8,)
    assert defaults(keras.optimizers.AdamW, "weight_decay", "epsilon") == (0.004, 1e-7)
    assert defaults(torch.optim.AdamW, "weight_decay", "eps") == (0.01, 1e-8)
    assert defaults(keras.optimizers.SGD, "learning_rate") == (0.01,)
    assert defaults(torch.optim.SGD, "lr") == (0.001,)


# --- Bad input: the same clear errors in every tree. ---

def tree_params(tree, dtype="float64"):
    _, _, weights = problem(dtype)
    return dict(tree_linear(tree, dtype, weights).named_parameters())


def tree_zero_grads(tree, params, dtype="float64"):
    return {name: to_tree(tree, np.zeros(tuple(p.shape), dtype)) for name, p in params.items()}


@pytest.mark.parametrize("tree", TREES)
def test_bad_gradients_raise_clear_errors(tree):
    params = tree_params(tree)
    optimizer = tree_optimizer(tree, "Adam", params, {})
    grads = tree_zero_grads(tree, params)
    with pytest.raises(KeyError, match=r"missing \['bias'\], unexpected \[\]"):
        optimizer.step({"weight": grads["weight"]})
    with pytest.raises(KeyError, match=r"missing \[\], unexpected \['extra'\]"):
        optimizer.step({**grads, "extra": grads["bias"]})
    with pytest.raises(ValueError, match=r"Adam.step: grads\['bias'\] must have shape \(3,\), got \(4,\)"):
        optimizer.step({**grads, "bias": to_tree(tree, np.zeros(4))})
    with pytest.raises(TypeError, match=r"grads\['bias'\] must have dtype float64, got float32"):
        optimizer.step({**grads, "bias": to_tree(tree, np.zeros(3, np.float32))})
    with pytest.raises(ValueError, match=r"grads\['bias'\] is None"):
        optimizer.step({**grads, "bias": None})
    assert optimizer.t == 0, "a rejected step must not count"
    optimizer.step(grads)
    assert optimizer.t == 1 and set(optimizer.state) == {"weight", "bias"}


BAD_HYPERPARAMETERS = [
    ("SGD", dict(lr=-0.1), ValueError, r"SGD: lr must be in \[0.0, inf\), got -0.1"),
    ("SGD", dict(lr="0.1"), TypeError, r"SGD: lr must be a real number"),
    ("SGD", dict(lr=0.1, momentum=-0.5), ValueError, r"SGD: momentum must be in"),
    ("SGD", dict(lr=0.1, nesterov=True), ValueError, r"SGD: nesterov=True needs momentum > 0"),
    ("SGD", dict(lr=0.1, weight_decay=-1.0), ValueError, r"SGD: weight_decay must be in"),
    ("Adagrad", dict(eps=-1e-10), ValueError, r"Adagrad: eps must be in"),
    ("Adagrad", dict(initial_accumulator_value=-0.1), ValueError, r"Adagrad: initial_accumulator_value must be in"),
    ("RMSprop", dict(alpha=1.0), ValueError, r"RMSprop: alpha must be in \[0.0, 1.0\), got 1.0"),
    ("RMSprop", dict(momentum=-0.9), ValueError, r"RMSprop: momentum must be in"),
    ("Adam", dict(betas=(1.0, 0.999)), ValueError, r"Adam: betas\[0\] must be in \[0.0, 1.0\), got 1.0"),
    ("Adam", dict(betas=(0.9, -0.1)), ValueError, r"Adam: betas\[1\] must be in"),
    ("Adam", dict(betas=(0.9,)), ValueError, r"Adam: betas must be a pair"),
    ("Adam", dict(eps=float("nan")), ValueError, r"Adam: eps must be in \[0.0, inf\), got nan"),
    ("AdamW", dict(weight_decay=-0.01), ValueError, r"AdamW: weight_decay must be in"),
]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("cls, kwargs, error, message", BAD_HYPERPARAMETERS)
def test_invalid_hyperparameters_raise_clear_errors(tree, cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        tree_optimizer(tree, cls, tree_params(tree), kwargs)


@pytest.mark.parametrize("tree", TREES)
def test_bad_params_raise_clear_errors(tree):
    with pytest.raises(ValueError, match=r"SGD: params is empty"):
        tree_optimizer(tree, "SGD", {}, dict(lr=0.1))
    # A parameter of another framework (or a plain list) cannot be updated in place.
    other = {"weight": [1.0, 2.0]}
    with pytest.raises(TypeError, match=r"SGD: params\['weight'\] must be a"):
        tree_optimizer(tree, "SGD", other, dict(lr=0.1))


# --- the options torch users reach for ------------------------------------------------------------
# ``SGD(dampening)``, ``RMSprop(centered)``, ``Adam``/``AdamW(amsgrad)`` as trajectories of the same
# problem against ``torch.optim`` (and Keras where it has the same thing), their argument checks, and
# the dict of named parameters every tree's optimizer takes. Each option is also shown to change the
# trajectory, so the parity compares something.

# name -> (class, kwargs with the option, the same kwargs without it)
OPTION_CONFIGS = {
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
KERAS_OPTION_CONFIGS = {
    "Adam-amsgrad": ("Adam", dict(lr=2**-5, betas=BETAS, eps=0.0, amsgrad=True),
                     lambda: keras.optimizers.Adam(2**-5, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=0.0, amsgrad=True)),
    "RMSprop-centered": ("RMSprop", dict(lr=2**-6, alpha=0.875, eps=0.0, centered=True),
                         lambda: keras.optimizers.RMSprop(2**-6, rho=0.875, epsilon=0.0, centered=True)),
    "RMSprop-centered-momentum": ("RMSprop", dict(lr=2**-6, alpha=0.875, eps=0.0, momentum=0.875, centered=True),
                                  lambda: keras.optimizers.RMSprop(2**-6, rho=0.875, momentum=0.875, epsilon=0.0, centered=True)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", OPTION_CONFIGS)
def test_option_trajectory_parity_and_torch_optim(config, dtype):
    cls, kwargs, _ = OPTION_CONFIGS[config]
    trajectory = optimizer_trajectory(cls, kwargs, {f"torch.optim.{cls}": torch_optim_reference(cls, kwargs)})
    check_trajectory(trajectory, dtype, f"{config} trajectory over {STEPS} steps")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", KERAS_OPTION_CONFIGS)
def test_option_trajectory_matches_keras(config, dtype):
    cls, kwargs, make_optimizer = KERAS_OPTION_CONFIGS[config]
    trajectory = optimizer_trajectory(cls, kwargs, {f"keras.optimizers.{cls}": keras_optimizer_reference(make_optimizer, 0.0)})
    check_trajectory(trajectory, dtype, f"{config} vs Keras over {STEPS} steps")


def final_state(cls, kwargs):
    trajectory = optimizer_trajectory(cls, kwargs)
    state = trajectory.start("numpy", "float64")
    return [trajectory.step(state, t) for t in range(1, STEPS + 1)][-1]


@pytest.mark.parametrize("config", OPTION_CONFIGS)
def test_each_option_changes_the_trajectory(config):
    """Without the option the same problem ends elsewhere (by far more than the float64 tolerance),
    so the parity above really exercises dampening, centering and the AMSGrad maximum."""
    cls, with_option, without = OPTION_CONFIGS[config]
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
