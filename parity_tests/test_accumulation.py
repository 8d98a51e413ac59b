"""The NumPy tree's gradient contract: gradients accumulate and caches stack, as torch's autograd.

``forward`` pushes what ``backward`` needs and ``backward`` pops it (last in, first out), and
``backward`` *adds* into ``grads`` (``zero_grad()`` clears). So a module used twice — an RNN cell
over T steps, a tied embedding, a shared block — ends with the sum of both uses' gradients:

    y = m(m(x));  g_x = m.backward(m.backward(g))   # == torch autograd of the same double use

Every Phase-1 layer is checked that way against its torch-tree twin (autograd) fed the same
weights, outputs, input gradients, parameter gradients and buffers; every Phase-1 model is checked
to give the full batch's gradients from two half-batches (two forwards, then two backwards).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml100.backends import get_module
from ml100.configs import CNNConfig, MobileNetConfig, ResNetConfig
from parity_tests.harness import TOLERANCES, random_weights

DTYPE = "float64"
TOLERANCE = TOLERANCES[DTYPE]


def relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return np.inf
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)


def assert_all_close(pairs: dict[str, tuple], what: str) -> None:
    """Every named pair within the float64 tolerance; the failure names each tensor that is not."""
    failures = [f"{name}: rel err {err:.3e}" for name, (a, b) in pairs.items()
                if (err := relative_error(a, b)) > TOLERANCE]
    assert not failures, f"{what}: " + "; ".join(failures)


def as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def twins(module: str, cls: str, *args, **kwargs):
    """The NumPy and torch modules of ``module.cls(*args, **kwargs)``, with the same random weights."""
    numpy_m = getattr(get_module("numpy", module), cls)(*args, dtype=DTYPE, **kwargs)
    torch_m = getattr(get_module("torch", module), cls)(*args, dtype=DTYPE, **kwargs)
    state = random_weights(numpy_m.canonical_state_dict(), np.random.default_rng(1))
    numpy_m.load_canonical_state_dict(state)
    torch_m.load_canonical_state_dict(state)
    return numpy_m, torch_m


rng = np.random.default_rng(0)
x_flat = rng.standard_normal((6, 4))  # (N, F)
x_image = rng.standard_normal((4, 3, 5, 5))  # (N, C, H, W)
x_digit = rng.standard_normal((2, 3, 8, 8))  # (N, C, H, W)
labels = np.eye(3)[[0, 2, 1, 1]]  # (N, K) one-hot
# (module, class, constructor args, constructor kwargs, inputs, the extra (non-differentiable) arguments of each call)
LAYERS = {
    "Linear": ("foundations.linear", "Linear", (4, 4), {}, (x_flat,), ((), ())),
    "Linear without bias": ("foundations.linear", "Linear", (4, 4), {"bias": False}, (x_flat,), ((), ())),
    "ReLU": ("foundations.activations", "ReLU", (), {}, (x_flat,), ((), ())),
    "GELU tanh": ("foundations.activations", "GELU", (), {"approximate": "tanh"}, (x_flat,), ((), ())),
    "Sigmoid": ("foundations.activations", "Sigmoid", (), {}, (x_flat,), ((), ())),
    "BatchNorm1d": ("foundations.batchnorm", "BatchNorm1d", (4,), {}, (x_flat,), ((), ())),
    "BatchNorm2d": ("foundations.batchnorm", "BatchNorm2d", (3,), {}, (x_image,), ((), ())),
    "LayerNorm": ("foundations.normalization", "LayerNorm", (4,), {}, (x_flat,), ((), ())),
    "RMSNorm": ("foundations.normalization", "RMSNorm", (4,), {}, (x_flat,), ((), ())),
    "GroupNorm": ("foundations.normalization", "GroupNorm", (3, 3), {}, (x_image,), ((), ())),
    "Dropout": ("foundations.regularization", "Dropout", (0.25,), {}, (x_flat,),
                ((rng.random((6, 4)) >= 0.25,), (rng.random((6, 4)) >= 0.25,))),
    "Conv2d": ("foundations.conv", "Conv2d", (3, 3, 3), {"padding": 1}, (x_image,), ((), ())),
    "MaxPool2d": ("foundations.pooling", "MaxPool2d", (3,), {"stride": 1, "padding": 1}, (x_image,), ((), ())),
    "AvgPool2d": ("foundations.pooling", "AvgPool2d", (3,), {"stride": 1, "padding": 1}, (x_image,), ((), ())),
    "HorizontalFlip": ("foundations.augmentation", "HorizontalFlip", (), {}, (x_image,),
                       ((np.array([True, False, True, True]),), (np.array([True, True, False, False]),))),
    "PadAndCrop": ("foundations.augmentation", "PadAndCrop", (), {"padding": 2}, (x_image,),
                   ((np.array([[0, 1], [2, 3], [4, 4], [1, 0]]),), (np.array([[3, 1], [0, 2], [2, 2], [4, 0]]),))),
    "Cutout": ("foundations.augmentation", "Cutout", (), {"size": 2}, (x_image,),
               ((np.array([[0, 1], [2, 3], [4, 4], [1, 0]]),), (np.array([[3, 1], [0, 2], [2, 2], [4, 0]]),))),
    "Mixup": ("foundations.augmentation", "Mixup", (), {}, (x_image, labels),
              ((np.array([0.1, 0.5, 0.7, 0.9]), np.array([2, 0, 3, 1])), (np.array([0.3, 0.2, 0.6, 0.8]), np.array([1, 3, 0, 2])))),
    "CutMix": ("foundations.augmentation", "CutMix", (), {}, (x_image, labels),
               ((np.array([[0, 0, 2, 3], [1, 1, 4, 4], [0, 2, 5, 5], [3, 0, 5, 2]]), np.array([2, 0, 3, 1])),
                (np.array([[1, 1, 3, 3], [0, 0, 5, 2], [2, 2, 4, 5], [0, 3, 2, 5]]), np.array([1, 3, 0, 2])))),
}
# Shape-changing modules and losses: two calls on two inputs, backpropagated in reverse order.
TWO_CALLS = {
    "Flatten": ("foundations.cnn", "Flatten", (), {}, (x_image,), (x_image[::-1].copy(),)),
    "GlobalAvgPool2d": ("foundations.pooling", "GlobalAvgPool2d", (), {}, (x_image,), (x_image[::-1].copy(),)),
    "MSELoss": ("foundations.losses", "MSELoss", (), {}, (x_flat, x_flat[::-1].copy()), (x_flat[:, ::-1].copy(), x_flat)),
    "CrossEntropyLoss": ("foundations.losses", "CrossEntropyLoss", (), {"label_smoothing": 0.1},
                         (x_flat, np.array([0, 1, 2, 3, 0, 1])), (x_flat[::-1].copy(), np.array([3, 3, 2, 1, 0, 0]))),
}


def torch_call(module, inputs, extras):
    return as_tuple(module(*inputs, *(torch.from_numpy(np.asarray(e)) for e in extras)))


def differentiable(arrays) -> list[int]:
    return [i for i, a in enumerate(arrays) if np.issubdtype(np.asarray(a).dtype, np.floating)]


@pytest.mark.parametrize("name", LAYERS)
def test_a_layer_used_twice_gets_both_uses_gradients_as_in_torch(name):
    module, cls, args, kwargs, inputs, (extra1, extra2) = LAYERS[name]
    numpy_m, torch_m = twins(module, cls, *args, **kwargs)
    numpy_m.zero_grad()
    y = as_tuple(numpy_m(*as_tuple(numpy_m(*inputs, *extra1)), *extra2))  # one module, called twice
    cotangents = [np.random.default_rng(2).standard_normal(out.shape) for out in y]
    g_x = as_tuple(numpy_m.backward(*as_tuple(numpy_m.backward(*cotangents))))  # both uses, in reverse

    leaves = [torch.tensor(a, requires_grad=True) for a in inputs]
    y_t = torch_call(torch_m, torch_call(torch_m, leaves, extra1), extra2)
    sum((out * torch.from_numpy(c)).sum() for out, c in zip(y_t, cotangents)).backward()

    pairs = {f"output[{i}]": (a, b.detach().numpy()) for i, (a, b) in enumerate(zip(y, y_t))}
    pairs.update({f"grad of input[{i}]": (g_x[i], leaves[i].grad.numpy()) for i in differentiable(inputs)})
    torch_grads = torch_m.canonical_grads()
    pairs.update({f"grad of {p}": (g, torch_grads[p]) for p, g in numpy_m.canonical_grads().items()})
    # Buffers too: batch norm's running statistics saw two batches.
    torch_state = torch_m.canonical_state_dict()
    pairs.update({f"state {p}": (v, torch_state[p]) for p, v in numpy_m.canonical_state_dict().items()})
    assert_all_close(pairs, f"numpy {cls} used twice vs torch")


@pytest.mark.parametrize("name", TWO_CALLS)
def test_two_calls_backpropagated_in_reverse_order_match_torch(name):
    module, cls, args, kwargs, first, second = TWO_CALLS[name]
    numpy_m, torch_m = twins(module, cls, *args, **kwargs)
    y1, y2 = numpy_m(*first), numpy_m(*second)
    c1, c2 = (np.random.default_rng(seed).standard_normal(np.shape(y)) for seed, y in ((3, y1), (4, y2)))
    g2 = as_tuple(numpy_m.backward(c2))[0]  # the last call first: the cache is a stack
    g1 = as_tuple(numpy_m.backward(c1))[0]
    pairs = {}
    for label, inputs, cot, grad in (("first", first, c1, g1), ("second", second, c2, g2)):
        leaves = [torch.tensor(a, requires_grad=bool(i in differentiable(inputs))) for i, a in enumerate(inputs)]
        (torch_m(*leaves) * torch.from_numpy(cot)).sum().backward()
        pairs[f"grad of the {label} call's input"] = (grad, leaves[0].grad.numpy())
    assert_all_close(pairs, f"numpy {cls} called twice vs torch")


def test_backward_without_a_cached_forward_says_so():
    linear = get_module("numpy", "foundations.linear").Linear(4, 4, dtype=DTYPE, rng=np.random.default_rng(0))
    with pytest.raises(RuntimeError, match=r"Linear\.backward: nothing cached"):
        linear.backward(np.ones((6, 4)))
    linear(x_flat)
    linear.backward(np.ones((6, 4)))
    with pytest.raises(RuntimeError, match="at most once per forward"):
        linear.backward(np.ones((6, 4)))  # one forward, two backwards


def test_no_grad_keeps_no_cache_and_eval_only_switches_behaviour():
    tree = get_module("numpy", "module")
    mlp = get_module("numpy", "foundations.mlp").MLP(4, [5], 3, dtype=DTYPE, rng=np.random.default_rng(0))
    with tree.no_grad():
        for _ in range(100):  # a long inference loop
            mlp(x_flat)
    assert all(not m._saved for _, m in mlp.named_modules()), "no_grad forwards must not grow the caches"
    with pytest.raises(RuntimeError, match="nothing cached"):
        mlp.backward(np.ones((6, 3)))
    # eval() is not no_grad: in eval mode the forward still caches, so backward works (Phase 5's saliency).
    mlp.eval()
    mlp.zero_grad()
    mlp(x_flat)
    assert mlp.backward(np.ones((6, 3))).shape == x_flat.shape


def test_zero_grad_clears_and_backward_accumulates():
    linear = get_module("numpy", "foundations.linear").Linear(4, 4, dtype=DTYPE, rng=np.random.default_rng(0))
    g = np.random.default_rng(5).standard_normal((6, 4))
    linear.zero_grad()
    linear(x_flat)
    linear.backward(g)
    once = linear.canonical_grads()
    linear(x_flat)
    linear.backward(g)
    twice = linear.canonical_grads()
    assert_all_close({name: (2 * once[name], twice[name]) for name in once}, "two identical backwards")
    linear.zero_grad()
    assert all(not np.any(grad) for grad in linear.canonical_grads().values())


def small_models():
    """Every Phase-1 model, small; those with batch norm in eval mode (batch statistics would couple the halves)."""
    def tree(path):
        return get_module("numpy", path)

    def seeded():
        return {"dtype": DTYPE, "rng": np.random.default_rng(0)}

    return {
        "LinearRegression": (tree("foundations.linear_regression").LinearRegression(4, 2, **seeded()), x_flat),
        "LogisticRegression": (tree("foundations.logistic_regression").LogisticRegression(4, **seeded()), x_flat),
        "SoftmaxRegression": (tree("foundations.softmax_regression").SoftmaxRegression(4, 3, **seeded()), x_flat),
        "MLP": (tree("foundations.mlp").MLP(4, [5, 6], 3, activation="gelu", **seeded()), x_flat),
        "CNN": (tree("foundations.cnn").CNN(CNNConfig(in_channels=3, channels=(2, 3), hidden=5), **seeded()), x_digit),
        "CNN with batch norm": (tree("foundations.cnn").CNN(CNNConfig(in_channels=3, channels=(2, 3), hidden=5, batch_norm=True),
                                                            **seeded()).eval(), x_digit),
        "ResNet": (tree("foundations.resnet").ResNet(ResNetConfig("basic", (1, 1, 1, 1), num_classes=3, in_channels=3,
                                                                  base_channels=2, small_input=True), **seeded()).eval(), x_digit),
        "ResNet bottleneck": (tree("foundations.resnet").ResNet(ResNetConfig("bottleneck", (1, 1, 1, 1), num_classes=3,
                                                                             in_channels=3, base_channels=2), **seeded()).eval(),
                              np.random.default_rng(6).standard_normal((2, 3, 16, 16))),
        "MobileNet": (tree("foundations.mobilenet").MobileNet(MobileNetConfig(num_classes=3, in_channels=3, stem_channels=2,
                                                                              channels=(4, 4), strides=(1, 2), se_reduction=2),
                                                              **seeded()).eval(), x_digit),
    }


@pytest.mark.parametrize("name", small_models().keys())
def test_two_half_batches_give_the_full_batch_gradients(name):
    model, x = small_models()[name]
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(1))
    model.load_canonical_state_dict(state)
    half = len(x) // 2
    with get_module("numpy", "module").no_grad():
        cotangent = np.random.default_rng(7).standard_normal(model(x).shape)
    model.zero_grad()
    model(x)
    full_grad_x = model.backward(cotangent)
    full = model.canonical_grads()

    model.zero_grad()
    model(x[:half])
    model(x[half:])
    grad_second = model.backward(cotangent[half:])  # the later forward first
    grad_first = model.backward(cotangent[:half])
    halves = model.canonical_grads()
    pairs = {f"grad of {p}": (halves[p], full[p]) for p in full}
    pairs["grad of x"] = (np.concatenate([grad_first, grad_second]), full_grad_x)
    assert_all_close(pairs, f"{name}: two half-batches vs the full batch")


def test_the_trainer_clears_gradients_every_step():
    """Two identical steps from the same weights move the weights by the same amount (plain SGD), so
    the second step's gradient did not include the first one's."""
    tree = {path: get_module("numpy", f"foundations.{path}") for path in ("mlp", "losses", "optim", "trainer")}
    mlp = tree["mlp"].MLP(4, [5], 3, dtype=DTYPE, rng=np.random.default_rng(0))
    trainer = tree["trainer"].Trainer(mlp, tree["losses"].CrossEntropyLoss(dtype=DTYPE),
                                      tree["optim"].SGD(dict(mlp.named_parameters()), lr=0.1))
    y = np.array([0, 1, 2, 0, 1, 2])
    start = mlp.canonical_state_dict()
    trainer.train_step(x_flat, y)
    first = mlp.canonical_state_dict()
    mlp.load_canonical_state_dict(start)
    trainer.train_step(x_flat, y)
    assert_all_close({name: (first[name], value) for name, value in mlp.canonical_state_dict().items()},
                     "the same step twice from the same weights")
