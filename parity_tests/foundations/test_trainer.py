"""Day 11: training parity. The MLP on digits in float64 — same initial weights (through one
safetensors file), same batches, Adam — traces the same loss curve in all three trees and in a
plain ``torch.nn`` + ``torch.optim`` loop, step by step."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ml100.backends import get_module
from ml100.data import batch_indices, load_digits_split
from ml100.weights import load_weights, save_weights
from parity_tests.harness import TREES, compare_tensors, nchw_to_nhwc
HIDDEN, LR, BATCH, STEPS = (32,), 1e-2, 32, 100


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(dtype="float64")


@pytest.fixture(scope="module")
def initial_state(tmp_path_factory):
    model = get_module("numpy", "foundations.mlp").MLP(64, HIDDEN, 10, dtype="float64", rng=np.random.default_rng(0))
    path = tmp_path_factory.mktemp("weights") / "mlp.safetensors"
    save_weights(path, model.canonical_state_dict())
    return load_weights(path)


def batches(n):
    """The first STEPS batches of the seeded epochs every tree trains on."""
    rng = np.random.default_rng(0)
    epochs = (batch_indices(n, BATCH, rng) for _ in itertools.count())
    return list(itertools.islice(itertools.chain.from_iterable(epochs), STEPS))


def train(tree, state, digits):
    model = get_module(tree, "foundations.mlp").MLP(64, HIDDEN, 10, dtype="float64")
    model.load_canonical_state_dict(state)
    loss_fn = get_module(tree, "foundations.losses").CrossEntropyLoss(dtype="float64")
    optimizer = get_module(tree, "foundations.optim").Adam(dict(model.named_parameters()), lr=LR)
    trainer = get_module(tree, "foundations.trainer").Trainer(model, loss_fn, optimizer)
    losses = [trainer.train_step(digits.x_train[i], digits.y_train[i]) for i in batches(len(digits.x_train))]
    return losses, model.canonical_state_dict(), trainer.evaluate(digits.x_test, digits.y_test)


def train_reference(state, digits):
    """The same run written with torch's ready-made pieces only."""
    net = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN[0], dtype=torch.float64), torch.nn.ReLU(),
                              torch.nn.Linear(HIDDEN[0], 10, dtype=torch.float64))
    net.load_state_dict({f"{2 * int(k.split('.')[1])}.{k.split('.')[2]}": torch.from_numpy(v) for k, v in state.items()})
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    losses = []
    for index in batches(len(digits.x_train)):
        loss = F.cross_entropy(net(torch.from_numpy(digits.x_train[index])), torch.from_numpy(digits.y_train[index]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def runs(initial_state, digits):
    return {tree: train(tree, initial_state, digits) for tree in TREES}


def test_loss_curves_are_identical_step_by_step(runs, initial_state, digits):
    curves = {tree: run[0] for tree, run in runs.items()}
    curves["torch.nn + torch.optim"] = train_reference(initial_state, digits)
    failures = []
    for (a, ca), (b, cb) in itertools.combinations(curves.items(), 2):
        for step, (la, lb) in enumerate(zip(ca, cb), start=1):
            before = len(failures)
            compare_tensors(f"loss at step {step} ({la!r} vs {lb!r})", f"{a} vs {b}", la, lb, "float64", failures)
            if len(failures) > before:  # the first step that diverges says enough
                break
    assert not failures, "loss curves diverge:\n  " + "\n  ".join(failures)
    assert len(curves["numpy"]) == STEPS
    # The run is a real training run, not a flat line that agrees trivially.
    assert curves["numpy"][-1] < 0.5 * curves["numpy"][0]


def test_final_weights_and_evaluation_agree(runs):
    failures = []
    for (a, ra), (b, rb) in itertools.combinations(runs.items(), 2):
        for name in ra[1]:
            compare_tensors(f"final {name}", f"{a} vs {b}", ra[1][name], rb[1][name], "float64", failures)
        compare_tensors("test loss", f"{a} vs {b}", ra[2][0], rb[2][0], "float64", failures)
        if ra[2][1] != rb[2][1]:
            failures.append(f"test accuracy [{a} vs {b}]: {ra[2][1]} vs {rb[2][1]}")
    assert not failures, "\n".join(failures)


def cnn_step_on_a_nan_pixel(tree: str, state, x, y):
    """One SGD step of the day-17 CNN on a batch with one NaN pixel: the loss and the new weights."""
    from ml100.configs import CNNConfig

    model = get_module(tree, "foundations.cnn").CNN(CNNConfig(channels=(2, 3), hidden=5), dtype="float64")
    model.load_canonical_state_dict(state)
    loss_fn = get_module(tree, "foundations.losses").CrossEntropyLoss(dtype="float64")
    optimizer = get_module(tree, "foundations.optim").SGD(dict(model.named_parameters()), lr=0.1)
    trainer = get_module(tree, "foundations.trainer").Trainer(model, loss_fn, optimizer)
    images = nchw_to_nhwc(x) if tree == "tf" else x  # the TF tree is NHWC
    return trainer.train_step(images, y), model.canonical_state_dict()


def test_a_nan_pixel_gives_a_nan_loss_and_nan_weights_in_every_tree_as_in_torch():
    """A NaN pixel reaches every logit through ReLU and max pool (torch propagates NaN through both),
    so the loss is NaN — not a normal-looking number while NaNs are written into the weights."""
    from ml100.configs import CNNConfig

    numpy_model = get_module("numpy", "foundations.cnn").CNN(CNNConfig(channels=(2, 3), hidden=5), dtype="float64",
                                                              rng=np.random.default_rng(0))
    state = numpy_model.canonical_state_dict()
    x = np.random.default_rng(1).standard_normal((4, 1, 8, 8))  # (N, C, H, W)
    x[2, 0, 3, 5] = np.nan
    y = np.array([0, 3, 5, 9])
    for tree in TREES:
        loss, after = cnn_step_on_a_nan_pixel(tree, state, x, y)
        assert np.isnan(loss), f"{tree}: one NaN pixel gave the finite loss {loss}"
        assert np.isnan(after["fc2.weight"]).all(), f"{tree}: fc2.weight must be NaN after the step, as in torch"
