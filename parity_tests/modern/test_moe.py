"""Day 66: a sparse mixture of experts (Hugging Face's ``MixtralSparseMoeBlock``) in three trees.

Reference: ``MixtralSparseMoeBlock(MixtralConfig(hidden_size=16, intermediate_size=32,
num_local_experts=4, num_experts_per_tok=2))`` built offline; the canonical state is its state dict
(``gate.weight`` ``(X, C)``, fused ``experts.gate_up_proj`` ``(X, 2F, C)``, ``experts.down_proj``
``(X, C, F)``), loaded unchanged (:func:`moe_state_to_hf` is the identity, checked by name and
shape). Its block returns the output only; the router logits are read from its ``gate`` with a
forward hook (:class:`HFBlock`), so both outputs and every gradient are compared.

Float64: Hugging Face's router computes its softmax in float32 whatever the dtype
(``router_logits.float()``), so a ``.double()`` block routes with float32 weights, ~1e-7 off
(:func:`test_hf_router_softmax_is_float32` pins it); the float64 reference replaces, in the
reference only, ``MixtralTopKRouter.forward`` by the same steps in the input's dtype.
``load_balancing_loss_func`` accumulates in float32 whatever its input (float32 zeros and
``.float()``), so it is a reference in float32 only; in float64 the three trees are compared with
each other and with finite differences.

Ties: the trees take the largest probabilities, NaN as the largest, equal values lowest index
first; ``torch.topk`` (Hugging Face's choice) promises no order among equal values and on CPU picks
others (:func:`test_ties_take_the_lowest_index`). So Hugging Face is left out of the special-values
pass, whose all-NaN rows and underflowed probabilities are ties.
"""
import contextlib
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import (MixtralSparseMoeBlock as HFMixtralSparseMoeBlock,
                                                          MixtralTopKRouter as HFMixtralTopKRouter,
                                                          load_balancing_loss_func)

from ml100.backends import get_module
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy, run_torch,
                                  to_canonical)

MODULE = "modern.moe"
HIDDEN, INTER, EXPERTS, TOP_K = 16, 32, 4, 2
B, T = 2, 5
HF_TIES = "torch.topk's choice among equal probabilities (all-NaN rows, underflowed zeros) is unspecified; the trees take the lowest index"
CONVERTERS = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}


def moe_state_to_hf(state: dict) -> dict:
    """The canonical MoE state -> ``MixtralSparseMoeBlock.state_dict()``: the same names and layouts
    (router ``(X, C)``; experts fused ``(X, 2F, C)`` gate rows then up rows, and ``(X, C, F)``)."""
    return dict(state)


def hf_block(hidden: int, inter: int, experts: int, top_k: int, dtype: str) -> HFMixtralSparseMoeBlock:
    """Hugging Face's block, built offline from a config (no download)."""
    config = MixtralConfig(hidden_size=hidden, intermediate_size=inter, num_local_experts=experts,
                           num_experts_per_tok=top_k, experts_implementation="eager")
    return HFMixtralSparseMoeBlock(config).to(getattr(torch, dtype)).eval()


def router_in_input_dtype(self, hidden_states):
    """``MixtralTopKRouter.forward`` without its float32 cast: the same steps in the input's dtype."""
    hidden_states = hidden_states.reshape(-1, self.hidden_dim)
    router_logits = F.linear(hidden_states, self.weight)  # (N, X)
    router_probs = torch.softmax(router_logits, dim=-1)  # (N, X)
    top_value, top_index = torch.topk(router_probs, self.top_k, dim=-1)  # (N, k) each
    return router_logits, top_value / top_value.sum(dim=-1, keepdim=True), top_index


class HFBlock(torch.nn.Module):
    """Hugging Face's block called as the trees are: ``(output, router_logits)``, the logits taken
    from its ``gate`` by a forward hook (the same tensor, inside the graph)."""

    def __init__(self, block: HFMixtralSparseMoeBlock):
        super().__init__()
        self.block = block

    def forward(self, hidden_states):
        captured = []
        handle = self.block.gate.register_forward_hook(lambda module, args, output: captured.append(output[0]))
        try:
            output = self.block(hidden_states)  # (B, T, C)
        finally:
            handle.remove()
        return output, captured[0]


def hf_block_reference(state, inputs, cotangents, dtype):
    block = hf_block(HIDDEN, INTER, EXPERTS, TOP_K, dtype)
    block.load_state_dict({name: torch.from_numpy(value) for name, value in moe_state_to_hf(state).items()})
    patch = mock.patch.object(HFMixtralTopKRouter, "forward", router_in_input_dtype)
    with patch if dtype == "float64" else contextlib.nullcontext():
        return run_torch(HFBlock(block), inputs, ("hidden_states",), cotangents, dict(block.named_parameters()))


class HFLoss(torch.nn.Module):
    """``load_balancing_loss_func`` on one layer's logits (a one-element tuple), no attention mask."""

    def forward(self, router_logits):
        return load_balancing_loss_func((router_logits,), EXPERTS, TOP_K)


def hf_loss_reference(state, inputs, cotangents, dtype):
    return run_torch(HFLoss(), inputs, ("router_logits",), cotangents, {})


def block_case(hidden=HIDDEN, inter=INTER, experts=EXPERTS, top_k=TOP_K, batch=B, steps=T, norm=True,
               references=None) -> Case:
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.MixtralSparseMoeBlock(hidden, inter, experts, top_k, norm, dtype=dtype, rng=rng),
        inputs=lambda dtype, rng: {"hidden_states": rng.standard_normal((batch, steps, hidden)).astype(dtype)},
        differentiable=("hidden_states",),
        references={} if references is None else references,
        output_names=("output", "router_logits"),
        special_excluded_references={"transformers MixtralSparseMoeBlock": HF_TIES},
    )


def loss_case(references: dict, rows: int = B * T) -> Case:
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: m.LoadBalancingLoss(EXPERTS, TOP_K, dtype=dtype),
        inputs=lambda dtype, rng: {"router_logits": (2.0 * rng.standard_normal((rows, EXPERTS))).astype(dtype)},
        differentiable=("router_logits",),
        references=references,
        output_names=("loss",),
        special_excluded_references={"transformers load_balancing_loss_func": HF_TIES},
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_block_matches_hf_mixtral(dtype):
    """Output, router logits, the input gradient and every parameter gradient (router, fused
    experts) in three trees and Hugging Face's block fed the same state dict."""
    check_parity(block_case(references={"transformers MixtralSparseMoeBlock": hf_block_reference}), dtype)


def test_block_without_renormalisation():
    """``norm_topk_prob=False`` (Qwen-MoE's flag): the raw top-k probabilities weight the experts."""
    check_parity(block_case(norm=False), "float64")


def test_load_balancing_loss_matches_hf_float32():
    """The auxiliary loss and its gradient on the logits equal ``load_balancing_loss_func``'s."""
    check_parity(loss_case({"transformers load_balancing_loss_func": hf_loss_reference}), "float32")


def test_load_balancing_loss_trees_float64():
    """Float64: the trees agree (Hugging Face's accumulates in float32, see the module docstring)."""
    check_parity(loss_case({}), "float64")


def test_hf_router_softmax_is_float32():
    """Pins why the float64 reference is patched: a float64 block's routing weights differ from the
    float64 softmax's by more than the float64 tolerance, and its aux loss comes back float32."""
    block = hf_block(HIDDEN, INTER, EXPERTS, TOP_K, "float64")
    rng = np.random.default_rng(0)
    block.gate.weight.data = torch.from_numpy(rng.uniform(-1.0, 1.0, (EXPERTS, HIDDEN)))
    x = torch.from_numpy(rng.standard_normal((B * T, HIDDEN)))
    logits, scores, _ = block.gate(x)
    _, exact, _ = router_in_input_dtype(block.gate, x)
    assert 1e-12 < (scores - exact).abs().max().item() < 1e-6
    assert load_balancing_loss_func((logits,), EXPERTS, TOP_K).dtype == torch.float32


def test_gradcheck_block():
    """Finite differences against the NumPy backward (tiny; random weights keep the top-k away from ties)."""
    gradcheck_numpy(block_case(hidden=3, inter=2, experts=3, top_k=2, batch=1, steps=3))


def test_gradcheck_loss():
    gradcheck_numpy(loss_case({}, rows=4))


def test_state_dict_is_hf_layout():
    """Every tree's canonical names and shapes are Hugging Face's, so its state dict loads unchanged."""
    expected = {name: tuple(value.shape) for name, value in hf_block(HIDDEN, INTER, EXPERTS, TOP_K, "float32").state_dict().items()}
    for tree in TREES:
        model = get_module(tree, MODULE).MixtralSparseMoeBlock(HIDDEN, INTER, EXPERTS, TOP_K, rng=np.random.default_rng(0))
        assert {name: tuple(value.shape) for name, value in model.canonical_state_dict().items()} == expected, tree


def test_ties_take_the_lowest_index():
    """A zero router gives four equal probabilities: every tree picks experts 0 and 1 with weight
    1/2 each; ``torch.topk`` returns two of the equal values too, but other indices (its choice)."""
    probs = np.full((3, EXPERTS), 1.0 / EXPERTS)
    for tree in TREES:
        router = get_module(tree, MODULE).MixtralTopKRouter(HIDDEN, EXPERTS, TOP_K, dtype="float64", rng=np.random.default_rng(0))
        router.load_canonical_state_dict({"weight": np.zeros((EXPERTS, HIDDEN))})
        _, scores, indices = router(CONVERTERS[tree](np.ones((3, HIDDEN))))
        np.testing.assert_array_equal(to_canonical(tree, indices), [[0, 1]] * 3, err_msg=tree)
        np.testing.assert_array_equal(to_canonical(tree, scores), 0.5, err_msg=tree)
    values, indices = torch.topk(torch.from_numpy(probs), TOP_K, dim=-1)
    np.testing.assert_array_equal(values.numpy(), 1.0 / EXPERTS)
    # Pinned so the page stays true: on this CPU build torch picks [2, 3] from four equal values.
    assert indices.tolist() != [[0, 1]] * 3


def test_nan_counts_as_largest():
    """NaN sorts before every number (torch's order for NaN), ties lowest index first."""
    probs = np.array([[0.2, np.nan, 0.5, np.nan], [0.1, 0.6, 0.3, 0.0]])
    for tree in TREES:
        indices = get_module(tree, MODULE).top_k_indices(CONVERTERS[tree](probs), 2)
        np.testing.assert_array_equal(to_canonical(tree, indices), [[1, 3], [1, 2]], err_msg=tree)


def test_module_used_twice_sums_gradients():
    """The NumPy block applied twice (output fed back in), two backwards in reverse order: every
    gradient equals autograd's through the torch tree."""
    rng = np.random.default_rng(5)
    x, cot = rng.standard_normal((B, T, HIDDEN)), rng.standard_normal((B, T, HIDDEN))
    models = {tree: get_module(tree, MODULE).MixtralSparseMoeBlock(HIDDEN, INTER, EXPERTS, TOP_K, dtype="float64",
                                                                  rng=np.random.default_rng(6)) for tree in ("numpy", "torch")}
    first, _ = models["numpy"](x)
    second, _ = models["numpy"](first)
    grad_x = models["numpy"].backward(models["numpy"].backward(cot))
    tx = torch.tensor(x, requires_grad=True)
    t_second, _ = models["torch"](models["torch"](tx)[0])
    (t_second * torch.from_numpy(cot)).sum().backward()
    np.testing.assert_allclose(second, t_second.detach().numpy(), rtol=1e-9)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, grad in models["numpy"].named_grads():
        np.testing.assert_allclose(grad, models["torch"].get_parameter(name).grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("tree", TREES)
def test_errors(tree):
    """One clear error, the same text in every tree."""
    m = get_module(tree, MODULE)
    rng = np.random.default_rng(0)
    assert_raises_exactly(ValueError, "MixtralSparseMoeBlock: top_k must be <= num_experts = 4 (each token picks "
                          "distinct experts), got 5", lambda: m.MixtralSparseMoeBlock(HIDDEN, INTER, 4, 5, rng=rng))
    assert_raises_exactly(ValueError, "LoadBalancingLoss: top_k must be an int >= 1, got 0",
                          lambda: m.LoadBalancingLoss(4, 0))
    assert_raises_exactly(TypeError, "MixtralTopKRouter: norm_topk_prob must be a bool (True or False), got 1",
                          lambda: m.MixtralTopKRouter(HIDDEN, 4, 2, 1, rng=rng))
    block = m.MixtralSparseMoeBlock(HIDDEN, INTER, EXPERTS, TOP_K, rng=rng)
    assert_raises_exactly(ValueError, "MixtralSparseMoeBlock: hidden_states must have 3 dimensions, got shape (10, 16)",
                          lambda: block(CONVERTERS[tree](np.zeros((10, HIDDEN), "float32"))))
    assert_raises_exactly(ValueError, "MixtralSparseMoeBlock: hidden_states must have shape (..., 16), got (2, 5, 8)",
                          lambda: block(CONVERTERS[tree](np.zeros((2, 5, 8), "float32"))))
    assert_raises_exactly(TypeError, "MixtralSparseMoeBlock: hidden_states must have dtype float32, got float64 "
                          "(cast it explicitly)", lambda: block(CONVERTERS[tree](np.zeros((2, 5, HIDDEN)))))
    loss = m.LoadBalancingLoss(EXPERTS, TOP_K)
    assert_raises_exactly(ValueError, "LoadBalancingLoss: router_logits must have shape (..., 4), got (6, 3)",
                          lambda: loss(CONVERTERS[tree](np.zeros((6, 3), "float32"))))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 2), steps=st.integers(1, 3), experts=st.integers(1, 4), data=st.data(),
       norm=st.booleans(), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_torch(batch, steps, experts, data, norm, seed):
    """Random expert counts and k (k = X included, one expert included), the empty batch too: the
    NumPy block's outputs and gradients equal autograd's through the torch tree."""
    top_k = data.draw(st.integers(1, experts))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, 3))
    models = {tree: get_module(tree, MODULE).MixtralSparseMoeBlock(3, 2, experts, top_k, norm, dtype="float64",
                                                                  rng=np.random.default_rng(seed)) for tree in ("numpy", "torch")}
    output, logits = models["numpy"](x)
    cot, cot_logits = rng.standard_normal(output.shape), rng.standard_normal(logits.shape)
    grad_x = models["numpy"].backward(cot, cot_logits)
    tx = torch.tensor(x, requires_grad=True)
    t_output, t_logits = models["torch"](tx)
    ((t_output * torch.from_numpy(cot)).sum() + (t_logits * torch.from_numpy(cot_logits)).sum()).backward()
    np.testing.assert_allclose(output, t_output.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, grad in models["numpy"].named_grads():
        t_grad = models["torch"].get_parameter(name).grad
        np.testing.assert_allclose(grad, np.zeros_like(grad) if t_grad is None else t_grad.numpy(), rtol=1e-9, atol=1e-12)
