"""Day 17: the LeNet-style CNN in three trees, against the same network built from ``torch.nn``
layers; and training parity: with batch norm, in float64, 50 Adam steps on digits give one loss curve
and one set of running statistics in every tree."""
import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from ml100.backends import get_module
from ml100.configs import CNNConfig
from ml100.data import batch_indices, load_digits_split
from parity_tests.harness import (NCHW_TO_NHWC, Case, check_parity, compare_tensors, gradcheck_numpy,
                                  torch_module_reference)

MODULE = "foundations.cnn"
CHANNELS, HIDDEN = (4, 6), 12
CONFIG = CNNConfig(channels=CHANNELS, hidden=HIDDEN)


class TorchNNCNN(nn.Module):
    """The same network from torch.nn's ready-made layers, with the same attribute names."""

    def __init__(self, batch_norm, dtype):
        super().__init__()
        c1, c2 = CHANNELS
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=not batch_norm)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=not batch_norm)
        self.bn1, self.bn2 = (nn.BatchNorm2d(c1), nn.BatchNorm2d(c2)) if batch_norm else (nn.Identity(), nn.Identity())
        self.fc1, self.fc2 = nn.Linear(c2 * 4, HIDDEN), nn.Linear(HIDDEN, 10)
        self.to(getattr(torch, dtype))

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def cnn_case(batch_norm, train=True, batch=4):
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.CNN(replace(CONFIG, batch_norm=batch_norm), dtype=dtype, rng=rng).train(train),
        inputs=lambda dtype, rng: {"x": rng.uniform(0, 1, (batch, 1, 8, 8)).astype(dtype)},
        references={"torch.nn": torch_module_reference(lambda dtype: TorchNNCNN(batch_norm, dtype).train(train))},
        tf_layouts={"x": NCHW_TO_NHWC},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_norm,train", [(False, True), (True, True), (True, False)])
def test_cnn_parity(batch_norm, train, dtype):
    check_parity(cnn_case(batch_norm, train), dtype)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_gradcheck(batch_norm):
    # With batch norm: eval mode, where finite differences are well conditioned (train-mode batch norm
    # has its own gradcheck in test_batchnorm.py).
    gradcheck_numpy(cnn_case(batch_norm, train=not batch_norm, batch=2))


def test_tf_flatten_uses_the_canonical_channel_first_order():
    import tensorflow as tf

    x = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)  # (N, C, H, W)
    numpy_flat = get_module("numpy", MODULE).Flatten(dtype="float64")(x)
    tf_flat = get_module("tf", MODULE).Flatten(dtype="float64")(tf.constant(x.transpose(NCHW_TO_NHWC))).numpy()
    np.testing.assert_array_equal(tf_flat, numpy_flat)
    keras_flat = __import__("keras").layers.Flatten()(x.transpose(NCHW_TO_NHWC)).numpy()
    assert not np.array_equal(keras_flat, numpy_flat), "Keras' Flatten is (H, W, C) order on NHWC"


# ---- training parity -------------------------------------------------------------------------
STEPS, BATCH, LR = 50, 32, 1e-2


def train_cnn(tree, state, split):
    model = get_module(tree, MODULE).CNN(replace(CONFIG, batch_norm=True), dtype="float64")
    model.load_canonical_state_dict(state)
    loss_fn = get_module(tree, "foundations.losses").CrossEntropyLoss(dtype="float64")
    optimizer = get_module(tree, "foundations.optim").Adam(dict(model.named_parameters()), lr=LR)
    trainer = get_module(tree, "foundations.trainer").Trainer(model, loss_fn, optimizer)
    rng = np.random.default_rng(0)
    epochs = (batch_indices(len(split.y_train), BATCH, rng) for _ in itertools.count())
    losses = [trainer.train_step(split.x_train[i], split.y_train[i])
              for i in itertools.islice(itertools.chain.from_iterable(epochs), STEPS)]
    return losses, model.canonical_state_dict()


@pytest.fixture(scope="module")
def cnn_runs():
    state = get_module("numpy", MODULE).CNN(replace(CONFIG, batch_norm=True), dtype="float64",
                                            rng=np.random.default_rng(0)).canonical_state_dict()
    splits = {"numpy": load_digits_split("NCHW", "float64"), "torch": load_digits_split("NCHW", "float64"),
              "tf": load_digits_split("NHWC", "float64")}
    return {tree: train_cnn(tree, state, splits[tree]) for tree in ("numpy", "torch", "tf")}


def test_cnn_with_batch_norm_trains_to_one_loss_curve(cnn_runs):
    failures = []
    for (a, (ca, _)), (b, (cb, _)) in itertools.combinations(cnn_runs.items(), 2):
        for step, (la, lb) in enumerate(zip(ca, cb), start=1):
            before = len(failures)
            compare_tensors(f"loss at step {step} ({la!r} vs {lb!r})", f"{a} vs {b}", la, lb, "float64", failures)
            if len(failures) > before:  # the first step that diverges says enough
                break
    assert not failures, "\n".join(failures)
    losses = cnn_runs["numpy"][0]
    assert len(losses) == STEPS and losses[-1] < 0.5 * losses[0]


def test_cnn_running_statistics_agree_after_training(cnn_runs):
    failures = []
    for (a, (_, sa)), (b, (_, sb)) in itertools.combinations(cnn_runs.items(), 2):
        for name in sa:
            compare_tensors(f"final {name}", f"{a} vs {b}", sa[name], sb[name], "float64", failures)
    assert not failures, "\n".join(failures)
    assert int(cnn_runs["tf"][1]["bn1.num_batches_tracked"]) == STEPS


@pytest.mark.parametrize("tree", ["numpy", "torch", "tf"])
def test_cnn_takes_its_config(tree):
    """The sizes come from a CNNConfig, which checked them (its own errors: parity_tests/test_configs.py)."""
    cnn = get_module(tree, MODULE)
    model = cnn.CNN(replace(CONFIG, num_classes=3), rng=np.random.default_rng(0))
    assert model.config.num_classes == 3 and model.canonical_state_dict()["fc2.weight"].shape == (3, HIDDEN)
    with pytest.raises(TypeError, match=r"CNN: config must be an ml100.configs.CNNConfig, got dict .*CNNConfig.from_dict"):
        cnn.CNN(CONFIG.to_dict())
