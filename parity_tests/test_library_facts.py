"""Facts about the installed libraries that the day pages and ``docs/conventions.md`` state.

Each test pins one sentence of the docs to what torch, TensorFlow and Keras actually do, so an
upgrade that changes a default or a subgradient fails here instead of leaving a page wrong.
"""
import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from scipy.special import erfc

from ml100.geometry import conv_padding

#: Targets of a BCE at logit 0: the literal ``max(z,0) - zy + log1p(exp(-|z|))`` has slope -y in
#: torch and 1 - y in TF there; the smooth function's slope is 1/2 - y.
TARGETS = np.array([0.0, 1.0, 0.25])


def torch_slope_at_zero(function) -> np.ndarray:
    """autograd's derivative of ``sum(function(z))`` at z = 0 (three copies)."""
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    function(z).sum().backward()
    return z.grad.numpy()


def tf_slope_at_zero(function) -> np.ndarray:
    """GradientTape's derivative of ``sum(function(z))`` at z = 0 (three copies)."""
    z = tf.Variable(np.zeros(3))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(function(z))
    return tape.gradient(total, z).numpy()


def test_subgradients_at_zero_of_the_literal_bce():
    """Day 3: ``clamp_min`` and ``abs`` have slope 0 at 0 in torch (``torch.maximum`` splits it, ½),
    ``tf.maximum`` has slope 1: the literal BCE-with-logits returns -y in torch and 1 - y in TF,
    neither the true 1/2 - y."""
    np.testing.assert_array_equal(torch_slope_at_zero(lambda z: torch.clamp_min(z, 0)), 0.0)
    np.testing.assert_array_equal(torch_slope_at_zero(torch.abs), 0.0)
    np.testing.assert_array_equal(torch_slope_at_zero(lambda z: torch.maximum(z, torch.zeros_like(z))), 0.5)
    np.testing.assert_array_equal(tf_slope_at_zero(lambda z: tf.maximum(z, 0.0)), 1.0)
    np.testing.assert_array_equal(tf_slope_at_zero(tf.abs), 0.0)
    y_torch, y_tf = torch.from_numpy(TARGETS), tf.constant(TARGETS)
    literal_torch = lambda z: torch.clamp_min(z, 0) - z * y_torch + torch.log1p(torch.exp(-torch.abs(z)))
    literal_tf = lambda z: tf.maximum(z, 0.0) - z * y_tf + tf.math.log1p(tf.exp(-tf.abs(z)))
    np.testing.assert_array_equal(torch_slope_at_zero(literal_torch), -TARGETS)
    np.testing.assert_array_equal(tf_slope_at_zero(literal_tf), 1 - TARGETS)


def test_gelu_and_leaky_relu_defaults():
    """conventions.md: ``tf.nn.gelu`` and ``keras.activations.gelu`` default to the exact (erf)
    form, ``keras.ops.gelu`` to the tanh form; LeakyReLU's slope is 0.3 in ``keras.layers`` and 0.2
    in ``keras.activations`` and ``tf.nn`` (torch: 0.01)."""
    default = lambda function, name: inspect.signature(function).parameters[name].default
    assert default(tf.nn.gelu, "approximate") is False
    assert default(keras.activations.gelu, "approximate") is False
    assert default(keras.ops.gelu, "approximate") is True
    # The forms, by value at x = -3, where they differ by 11% (float32, so float32's tolerance):
    # erf -0.0040497, tanh -0.0036374.
    x = np.float32(-3.0)
    erf_form = 0.5 * -3.0 * math.erfc(3.0 / math.sqrt(2))
    tanh_form = 0.5 * -3.0 * (1 + math.tanh(math.sqrt(2 / math.pi) * (-3.0 + 0.044715 * -27.0)))
    assert abs(erf_form / tanh_form - 1) > 0.1
    for function in (tf.nn.gelu, keras.activations.gelu, lambda v: torch.nn.functional.gelu(torch.tensor(v))):
        assert float(function(x)) == pytest.approx(erf_form, rel=1e-4)
    assert float(keras.ops.gelu(x)) == pytest.approx(tanh_form, rel=1e-4)
    assert keras.layers.LeakyReLU().negative_slope == pytest.approx(0.3)
    assert default(keras.activations.leaky_relu, "negative_slope") == 0.2
    assert default(tf.nn.leaky_relu, "alpha") == 0.2
    assert torch.nn.LeakyReLU().negative_slope == 0.01


def test_tf_gelu_error_from_float32_constants_is_largest_in_the_negative_tail():
    """Day 5: in float64, ``tf.nn.gelu``'s float32-rounded 1/sqrt(2) costs ~4e-9 relative for x > 0
    but grows where Phi(x) is small: ~2.6e-8 at -1, ~2.9e-7 at -4."""
    x = np.array([0.5, 1.0, 2.0, 4.0, -1.0, -4.0])
    exact = 0.5 * x * erfc(-x / np.sqrt(2.0))  # (6,)
    relative = np.abs(tf.nn.gelu(tf.constant(x)).numpy() / exact - 1)  # (6,)
    assert np.all(relative[:4] < 6e-9), relative
    assert 2e-8 < relative[4] < 3e-8, relative
    assert 2.5e-7 < relative[5] < 3.5e-7, relative


def same_padding_of_tf(size: int, kernel: int, stride: int, dilation: int, rng) -> tuple[int, int]:
    """The (before, after) padding that makes a VALID ``tf.nn.conv2d`` equal its "SAME" one, tried
    over every split of every total up to the dilated kernel's extent."""
    x = rng.standard_normal((1, size, 1, 1))  # (N, H, W, C): one column
    w = rng.standard_normal((kernel, 1, 1, 1))  # (kh, kw, in, out)
    conv = lambda image, padding: tf.nn.conv2d(image, w, strides=[1, stride, 1, 1], padding=padding,
                                               dilations=[1, dilation, 1, 1]).numpy()
    same = conv(x, "SAME")  # (1, Ho, 1, 1)
    extent = dilation * (kernel - 1) + 1
    # A VALID convolution needs at least the kernel's extent of (padded) input.
    for total in range(max(extent - size, 0), extent + 1):
        for before in range(total + 1):
            valid = conv(np.pad(x, ((0, 0), (before, total - before), (0, 0), (0, 0))), "VALID")
            if valid.shape == same.shape and np.allclose(valid, same, rtol=1e-9, atol=0):
                return before, total - before
    raise AssertionError(f"no padding reproduces SAME for size {size}, kernel {kernel}, stride {stride}")


def test_tf_same_padding_totals():
    """Day 15: TF "SAME" pads max((ceil(H/s) - 1) s + d(k - 1) + 1 - H, 0) in total, the odd pixel
    after; on sizes divisible by s that is d(k - 1) + 1 - s. (0, 1) at stride 2 on even sizes is the
    3x3 kernel's case only (4x4: (1, 1), 5x5: (1, 2)). ``ml100.geometry.conv_padding`` agrees."""
    rng = np.random.default_rng(0)
    at_stride_2_even = {}
    for kernel in range(1, 6):
        for stride in (1, 2, 3):
            for dilation in (1, 2):
                for size in (6, 7, 8, 9):
                    pads = same_padding_of_tf(size, kernel, stride, dilation, rng)
                    total = max((math.ceil(size / stride) - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
                    assert pads == (total // 2, total - total // 2), (size, kernel, stride, dilation, pads)
                    if size % stride == 0:
                        assert sum(pads) == max(dilation * (kernel - 1) + 1 - stride, 0)
                    ours = conv_padding("same", (size, size), (kernel, kernel), (stride, stride), (dilation, dilation))
                    assert ours == (pads, pads)
                    if stride == 2 and dilation == 1 and size % 2 == 0:
                        at_stride_2_even.setdefault(kernel, set()).add(pads)
    assert at_stride_2_even == {1: {(0, 0)}, 2: {(0, 0)}, 3: {(0, 1)}, 4: {(1, 1)}, 5: {(1, 2)}}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("padding", ["VALID", "SAME", "explicit"])
def test_tf_conv2d_dilated_gradient_on_cpu(dtype, padding):
    """Day 15: ``tf.nn.conv2d`` with dilation 2 has a CPU gradient in float32 with "VALID" or
    "SAME" padding; in float64, or with explicit padding, Conv2DBackpropInput raises "Current CPU
    implementations do not yet support dilation rates larger than 1"."""
    rng = np.random.default_rng(0)
    x = tf.Variable(rng.standard_normal((1, 8, 8, 2)).astype(dtype))  # (N, H, W, C)
    w = tf.Variable(rng.standard_normal((3, 3, 2, 2)).astype(dtype))  # (kh, kw, in, out)
    tf_padding = [[0, 0], [1, 1], [1, 1], [0, 0]] if padding == "explicit" else padding

    def gradients():
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(tf.nn.conv2d(x, w, 1, tf_padding, dilations=2))
        return [g.numpy() for g in tape.gradient(total, [x, w])]

    if dtype == "float32" and padding != "explicit":
        assert all(np.all(np.isfinite(g)) for g in gradients())
    else:
        with pytest.raises(tf.errors.InvalidArgumentError, match="do not yet support dilation rates larger than 1"):
            gradients()


def quadratic_gradient(theta: np.ndarray, scale: float) -> np.ndarray:
    """Gradient of ``scale * (theta_0^2 + 10 theta_1^2)``: an ill-conditioned bowl."""
    return scale * np.array([2.0, 20.0]) * theta  # (2,)


def torch_trajectory(make_optimizer, scale: float, steps: int = 5) -> np.ndarray:
    """Parameters after ``steps`` updates of a torch optimizer on the scaled quadratic."""
    theta = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer([theta])
    for _ in range(steps):
        theta.grad = torch.from_numpy(quadratic_gradient(theta.detach().numpy(), scale))
        optimizer.step()
    return theta.detach().numpy()


def test_adagrad_is_invariant_to_scaling_the_loss_only_from_a_zero_accumulator():
    """Day 10: from s_0 = 0, scaling the loss by c scales g and sqrt(s) alike, so AdaGrad's steps
    do not change (up to eps); a non-zero start (Keras' default 0.1) breaks the invariance."""
    adagrad = lambda initial: (lambda params: torch.optim.Adagrad(params, lr=0.1, eps=1e-10,
                                                                   initial_accumulator_value=initial))
    np.testing.assert_allclose(torch_trajectory(adagrad(0.0), 100.0), torch_trajectory(adagrad(0.0), 1.0), rtol=1e-9)
    moved = np.abs(torch_trajectory(adagrad(0.1), 100.0) - torch_trajectory(adagrad(0.1), 1.0))  # (2,)
    assert moved.max() > 1e-3, moved
    assert keras.optimizers.Adagrad().initial_accumulator_value == pytest.approx(0.1)


def amsgrad_by_the_formula(gradients: list[np.ndarray], lr: float, beta1: float, beta2: float,
                           correct_v_max: bool = True) -> np.ndarray:
    """Adam with v_max = max(v_max, v_t), eps = 0: the step is lr * (m_t / (1 - beta1^t)) over
    sqrt(v_max / (1 - beta2^t)), or over sqrt(v_max) with ``correct_v_max=False``."""
    theta, m, v, v_max = np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2)
    for t, g in enumerate(gradients, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = np.maximum(v_max, v)
        correction = 1 - beta2**t if correct_v_max else 1.0
        theta = theta - lr * (m / (1 - beta1**t)) / np.sqrt(v_max / correction)
    return theta


def test_amsgrad_keeps_the_bias_correction():
    """Day 10: torch's ``Adam(amsgrad=True)`` and Keras' divide m_hat by sqrt(v_max / (1 - beta2^t)),
    the running maximum *with* the bias correction; dropping it changes the steps many-fold."""
    gradients = [np.array([1.0, -0.5]), np.array([0.1, 2.0]), np.array([-0.3, 0.1]), np.array([0.05, 0.05])]
    expected = amsgrad_by_the_formula(gradients, 0.1, 0.9, 0.999)
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.1, betas=(0.9, 0.999), eps=0.0, amsgrad=True)
    variable = keras.Variable(np.zeros(2), dtype="float64")
    keras_optimizer = keras.optimizers.Adam(learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=0.0, amsgrad=True)
    for g in gradients:
        theta.grad = torch.from_numpy(g)
        optimizer.step()
        keras_optimizer.apply_gradients([(tf.constant(g), variable)])
    np.testing.assert_allclose(theta.detach().numpy(), expected, rtol=1e-9)
    # Keras holds lr and the betas as float32 variables (day 9): float32's tolerance, on float64 weights.
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-4)
    without_correction = amsgrad_by_the_formula(gradients, 0.1, 0.9, 0.999, correct_v_max=False)
    assert np.abs(without_correction).max() > 5 * np.abs(expected).max()
