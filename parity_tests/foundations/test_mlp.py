"""Day 7: the MLP in three trees (forward, backward, every parameter), against a torch.nn.Sequential."""
import numpy as np
import pytest
import torch

from parity_tests.harness import Case, check_parity, gradcheck_numpy, run_torch

SIZES = (6, (7, 5), 4)


def torch_sequential(activation):
    def run(state, inputs, cotangents, dtype):
        layers = []
        sizes = [SIZES[0], *SIZES[1], SIZES[2]]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(n_in, n_out, dtype=getattr(torch, dtype)))
            if i < len(sizes) - 2:
                layers.append(activation())
        net = torch.nn.Sequential(*layers)
        # Sequential numbers activations too: our layers.{i} is its index 2*i.
        net.load_state_dict({f"{2 * int(k.split('.')[1])}.{k.split('.')[2]}": torch.from_numpy(v) for k, v in state.items()})
        params = {f"layers.{int(k.split('.')[0]) // 2}.{k.split('.')[1]}": p for k, p in net.named_parameters()}
        return run_torch(net, inputs, ("x",), cotangents, params=params)

    return run


def mlp_case(activation="relu", torch_activation=torch.nn.ReLU):
    return Case(
        module="foundations.mlp",
        build=lambda m, dtype, rng: m.MLP(SIZES[0], SIZES[1], SIZES[2], activation=activation, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"x": rng.standard_normal((8, SIZES[0])).astype(dtype)},
        references={"torch.nn.Sequential": torch_sequential(torch_activation)},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation,torch_activation", [("relu", torch.nn.ReLU), ("tanh", torch.nn.Tanh), ("gelu", torch.nn.GELU)])
def test_mlp_parity(activation, torch_activation, dtype):
    check_parity(mlp_case(activation, torch_activation), dtype)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_mlp_gradcheck(activation):
    gradcheck_numpy(mlp_case(activation))


def test_mlp_canonical_names_and_shapes():
    from ml100.backends import get_module

    for tree in ("numpy", "torch", "tf"):
        model = get_module(tree, "foundations.mlp").MLP(6, (7, 5), 4, rng=np.random.default_rng(0))
        shapes = {k: v.shape for k, v in model.canonical_state_dict().items()}
        assert shapes == {"layers.0.weight": (7, 6), "layers.0.bias": (7,), "layers.1.weight": (5, 7),
                          "layers.1.bias": (5,), "layers.2.weight": (4, 5), "layers.2.bias": (4,)}, tree


def test_mlp_unknown_activation_is_a_clear_error():
    from ml100.backends import get_module

    for tree in ("numpy", "torch", "tf"):
        with pytest.raises(ValueError, match="unknown activation 'swish'.*relu"):
            get_module(tree, "foundations.mlp").MLP(6, (7,), 4, activation="swish")
