"""Day 47: the encoder-decoder Transformer and the toy-task model in three trees.

References, fed the canonical state unchanged (the trees use torch's names): ``torch.nn.Transformer``
(post-LN and pre-LN, both layouts, the causal target mask as bool and as torch's float
``generate_square_subsequent_mask``, key padding on source, target and memory), and for
``Seq2SeqTransformer`` a torch composition of ``nn.Embedding``, the same sinusoidal table (written
here from the paper's formula), ``nn.Transformer`` and ``nn.Linear``. No reference takes dropout
masks: the dropout case is the trees' own parity plus the finite-difference check.
"""
import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from ml100.backends import get_module
from ml100.checks import DECODER_DROPOUT_SITES, ENCODER_DROPOUT_MASKS
from ml100.configs import ConfigError, TransformerConfig
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy, run_torch,
                                  torch_module_reference)
from parity_tests.scripts import load_script, refusal

MODULE = "modern.transformer"
B, S, T, E, H, F = 2, 4, 3, 4, 2, 5
#: Encoder and decoder layers of the parity cases: two decoder layers, so memory's gradient is a sum.
LAYERS = (1, 2)
#: Inputs named ``keep:<layer>:<site>`` are gathered into ``dropout_masks[<layer>][<site>]``.
KEEP_PREFIX = "keep:"


class Called:
    """A model as a case calls it: the harness passes the inputs positionally, this passes them by
    name; the ``keep:*`` inputs become the nested ``dropout_masks`` dict; ``flags`` are fixed keywords."""

    def __init__(self, model, names, **flags):
        self.model, self.names, self.flags = model, tuple(names), flags

    def arguments(self, tensors) -> dict:
        named = dict(zip(self.names, tensors))
        masks = {}
        for name in [name for name in named if name.startswith(KEEP_PREFIX)]:
            _, layer, site = name.split(":")
            masks.setdefault(layer, {})[site] = named.pop(name)
        if masks:
            named["dropout_masks"] = masks
        return {**named, **self.flags}

    def __call__(self, *tensors):
        return self.model(**self.arguments(tensors))

    def forward(self, *tensors):
        return self.model.forward(**self.arguments(tensors))

    def backward(self, grad_output):
        return self.model.backward(grad_output)

    def __getattr__(self, name):
        return getattr(self.model, name)


def causal_mask(steps: int) -> np.ndarray:
    """``(T, T)`` bool, True above the diagonal (torch's meaning for ``tgt_mask``: True = ignore)."""
    return np.triu(np.ones((steps, steps), dtype=bool), k=1)


def float_causal_mask(steps: int, dtype: str) -> np.ndarray:
    """torch's ``generate_square_subsequent_mask``: ``-inf`` above the diagonal, 0 elsewhere."""
    return np.where(causal_mask(steps), -np.inf, 0.0).astype(dtype)


def dropout_mask_shapes(batch_first: bool, encoder_layers: int, decoder_layers: int) -> dict:
    """``keep:<layer>:<site>`` -> shape: day 45's four sites per encoder layer (residual ones like
    ``src``), day 46's six per decoder layer (like ``tgt``), attention weights ``(B, H, ., .)``."""
    def like(length, width):
        return (B, length, width) if batch_first else (length, B, width)
    encoder = {"self_attn": (B, H, S, S), "dropout1": like(S, E), "dropout": like(S, F), "dropout2": like(S, E)}
    decoder = {"self_attn": (B, H, T, T), "multihead_attn": (B, H, T, S), "dropout1": like(T, E),
               "dropout2": like(T, E), "dropout": like(T, F), "dropout3": like(T, E)}
    assert set(encoder) == set(ENCODER_DROPOUT_MASKS) and set(decoder) == set(DECODER_DROPOUT_SITES)
    shapes = {}
    for stack, count, sites in (("encoder", encoder_layers, encoder), ("decoder", decoder_layers, decoder)):
        for index in range(count):
            shapes.update({f"{KEEP_PREFIX}{stack}.layers.{index}:{site}": shape for site, shape in sites.items()})
    return shapes


def transformer_inputs(batch_first: bool, tgt_mask="bool", key_padding=False, dropout_layers=None):
    """The named inputs: ``src``, ``tgt``, the masks asked for (every row keeps a key) and, given
    ``dropout_layers = (encoder, decoder)``, every layer's keep-masks (True = keep)."""
    def layout(length):
        return (B, length, E) if batch_first else (length, B, E)

    def draw(dtype, rng):
        inputs = {"src": rng.standard_normal(layout(S)).astype(dtype), "tgt": rng.standard_normal(layout(T)).astype(dtype)}
        if tgt_mask == "bool":
            inputs["tgt_mask"] = causal_mask(T)
        elif tgt_mask == "float":
            inputs["tgt_mask"] = float_causal_mask(T, dtype)
        if key_padding:
            for name, length in (("src_key_padding_mask", S), ("tgt_key_padding_mask", T),
                                 ("memory_key_padding_mask", S)):
                padding = rng.random((B, length)) < 0.4  # (B, L), True = ignore
                padding[:, 0] = False
                inputs[name] = padding
        if dropout_layers:
            for name, shape in dropout_mask_shapes(batch_first, *dropout_layers).items():
                inputs[name] = rng.random(shape) < 0.8
        return inputs
    return draw


def torch_reference(options: dict, flags: dict, layers: tuple[int, int]):
    """``nn.Transformer`` loaded with the canonical state unchanged (``dropout=0``)."""
    def run(state, inputs, cotangents, dtype):
        module = torch.nn.Transformer(E, H, *layers, F, dropout=0.0, dtype=getattr(torch, dtype), **options)
        module.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        return run_torch(Called(module, inputs, **flags), inputs, ("src", "tgt"), cotangents)
    return run


def transformer_case(tgt_mask="bool", key_padding=False, dropout=0.0, layers=LAYERS, **options):
    """One configuration; ``options`` are constructor arguments (``norm_first``, ``batch_first``, ...)."""
    batch_first = options.get("batch_first", False)
    draw = transformer_inputs(batch_first, tgt_mask, key_padding, layers if dropout else None)
    names = tuple(draw("float64", np.random.default_rng(0)))
    flags = {"tgt_is_causal": True} if tgt_mask else {}
    references = {} if dropout else {"torch nn.Transformer": torch_reference(options, flags, layers)}
    sequence_axis = 0 if batch_first else 1
    keep_axes = {name: sequence_axis for name in names if name.startswith(KEEP_PREFIX) and "attn" not in name}
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: Called(m.Transformer(E, H, *layers, F, dropout=dropout, dtype=dtype, rng=rng,
                                                         **options), names, **flags),
        inputs=draw,
        differentiable=("src", "tgt"),
        references=references,
        output_names=("output",),
        batch_axes={"src": sequence_axis, "tgt": sequence_axis, "tgt_mask": None, **keep_axes},
        special_finite_inputs={"tgt_mask": "torch's float causal mask: its -inf entries are the mask, not data"}
        if tgt_mask == "float" else {},
        **({"empty_batch_opt_out": "the dropout masks are drawn for a batch of B; the empty batch runs without dropout"}
           if dropout else {}),
    )


CASES = {
    "post-LN, causal": lambda: transformer_case(),
    "pre-LN, causal": lambda: transformer_case(norm_first=True),
    "post-LN, gelu, batch first, key padding": lambda: transformer_case(batch_first=True, activation="gelu",
                                                                        key_padding=True),
    "pre-LN, float causal mask, key padding": lambda: transformer_case(tgt_mask="float", key_padding=True,
                                                                       norm_first=True),
    "post-LN, no mask, no bias, eps 1e-3": lambda: transformer_case(tgt_mask=None, bias=False, layer_norm_eps=1e-3),
    "post-LN, dropout masks": lambda: transformer_case(dropout=0.25),
    "pre-LN, dropout masks, batch first": lambda: transformer_case(dropout=0.25, norm_first=True, batch_first=True),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_transformer_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("options", [{}, {"norm_first": True, "dropout": 0.25}], ids=["post-LN", "pre-LN dropout"])
def test_transformer_gradcheck(options):
    """One encoder layer and two decoder layers (memory's gradient sums both cross-attentions)."""
    gradcheck_numpy(transformer_case(**options))


def build(tree: str, *args, **kwargs):
    return get_module(tree, MODULE).Transformer(*args, dtype="float64", rng=np.random.default_rng(0), **kwargs)


def tree_tensor(tree: str, array):
    import tensorflow as tf
    return {"numpy": lambda a: a, "torch": torch.from_numpy, "tf": tf.constant}[tree](array)


def as_numpy(tensor) -> np.ndarray:
    return np.asarray(tensor.detach() if isinstance(tensor, torch.Tensor) else tensor)


@pytest.mark.parametrize("tree", TREES)
def test_state_dict_and_init_are_torchs(tree):
    """Names, order and shapes are ``nn.Transformer``'s (both final norms too); as torch's
    ``_reset_parameters``, every matrix is Xavier-uniform and the biases and LayerNorms keep their init."""
    model = build(tree, 8, 2, 2, 3, 16)
    state = model.canonical_state_dict()
    reference = torch.nn.Transformer(8, 2, 2, 3, 16).state_dict()
    assert list(state) == list(reference)
    assert all(state[name].shape == tuple(reference[name].shape) for name in state)
    for name, value in state.items():
        if value.ndim == 2:
            bound = math.sqrt(6.0 / sum(value.shape))
            assert np.abs(value).max() <= bound and np.abs(value).max() > 0.9 * bound, name
    assert (state["encoder.norm.weight"] == 1).all() and not state["decoder.norm.bias"].any()
    assert not state["decoder.layers.2.multihead_attn.in_proj_bias"].any()


def test_same_seed_same_weights_in_every_tree():
    """One rng draws the same initial numbers in every tree."""
    states = [build(tree, 4, 2, 1, 2, 5).canonical_state_dict() for tree in TREES]
    for other in states[1:]:
        assert all(np.array_equal(states[0][name], other[name]) for name in states[0])


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("size", [0, 1, 4])
def test_generate_square_subsequent_mask_is_torchs(tree, size):
    """The static method returns torch's float mask: same values (``-inf`` above the diagonal), same dtype."""
    ours = get_module(tree, MODULE).Transformer.generate_square_subsequent_mask(size, "float64")
    theirs = torch.nn.Transformer.generate_square_subsequent_mask(size, dtype=torch.float64).numpy()
    assert as_numpy(ours).dtype == np.float64
    np.testing.assert_array_equal(as_numpy(ours), theirs)


def test_torch_nested_tensor_path_zeroes_padded_memory():
    """Eval mode, no gradients, batch first, post-LN, source key padding: ``nn.TransformerEncoder``
    runs on a nested tensor and returns 0 at the padded positions of the memory; the trees compute
    them. The model's output agrees anyway when the decoder ignores those positions
    (``memory_key_padding_mask`` = ``src_key_padding_mask``)."""
    rng = np.random.default_rng(5)
    reference = torch.nn.Transformer(E, H, 2, 1, F, dropout=0.0, batch_first=True, dtype=torch.float64).eval()
    model = build("numpy", E, H, 2, 1, F, batch_first=True)
    model.load_canonical_state_dict({name: value.numpy() for name, value in reference.state_dict().items()})
    src, tgt = rng.standard_normal((B, S, E)), rng.standard_normal((B, T, E))
    padding = np.zeros((B, S), dtype=bool)
    padding[0, 2:] = True
    with torch.no_grad():
        memory = reference.encoder(torch.from_numpy(src), src_key_padding_mask=torch.from_numpy(padding)).numpy()
        output = reference(torch.from_numpy(src), torch.from_numpy(tgt), src_key_padding_mask=torch.from_numpy(padding),
                           memory_key_padding_mask=torch.from_numpy(padding)).numpy()
    ours = model.encoder(src, src_key_padding_mask=padding)
    assert not memory[padding].any() and np.abs(ours[padding]).min() > 0
    np.testing.assert_allclose(ours[~padding], memory[~padding], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model(src, tgt, src_key_padding_mask=padding, memory_key_padding_mask=padding), output,
                               rtol=1e-9, atol=1e-12)


def test_numpy_module_used_twice_matches_torch_autograd():
    """The model applied twice (the second call's target is the first's output), backpropagated in
    reverse: the NumPy model's gradients are both uses' sum, as torch autograd's."""
    numpy_m, torch_m = build("numpy", E, H, 1, 2, F), build("torch", E, H, 1, 2, F)
    torch_m.load_canonical_state_dict(numpy_m.canonical_state_dict())
    rng = np.random.default_rng(6)
    src, tgt, cotangent = rng.standard_normal((S, B, E)), rng.standard_normal((T, B, E)), rng.standard_normal((T, B, E))
    mask = causal_mask(T)
    numpy_m(src, numpy_m(src, tgt, tgt_mask=mask), tgt_mask=mask)
    grad_src_second, grad_middle = numpy_m.backward(cotangent)
    grad_src_first, grad_tgt = numpy_m.backward(grad_middle)
    tensors = [torch.tensor(a, requires_grad=True) for a in (src, tgt)]
    middle = torch_m(*tensors, tgt_mask=torch.from_numpy(mask))
    (torch_m(tensors[0], middle, tgt_mask=torch.from_numpy(mask)) * torch.from_numpy(cotangent)).sum().backward()
    np.testing.assert_allclose(grad_src_first + grad_src_second, tensors[0].grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_tgt, tensors[1].grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, grad in torch_m.canonical_grads().items():
        np.testing.assert_allclose(numpy_m.canonical_grads()[name], grad, rtol=1e-10, atol=1e-12, err_msg=name)


# ---- Seq2SeqTransformer -----------------------------------------------------------------------

CONFIG = TransformerConfig(vocab_size=7, d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                           dim_feedforward=5, max_len=6)


def tutorial_table(max_len: int, d_model: int) -> np.ndarray:
    """The sinusoidal table from the paper's formula (PyTorch tutorial layout: sines on even columns)."""
    position = np.arange(max_len)[:, None]  # (L, 1)
    angle = position * np.exp(np.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))  # (L, C/2)
    table = np.zeros((max_len, d_model))
    table[:, 0::2], table[:, 1::2] = np.sin(angle), np.cos(angle)
    return table


class TorchSeq2SeqTransformer(torch.nn.Module):
    """The reference: ``nn.Embedding`` x sqrt(d) + the table, ``nn.Transformer`` (batch first, torch's
    float causal mask), ``nn.Linear``; names as the trees'."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.src_embedding = torch.nn.Embedding(config.vocab_size, config.d_model)
        self.tgt_embedding = torch.nn.Embedding(config.vocab_size, config.d_model)
        self.register_buffer("pe", torch.from_numpy(tutorial_table(config.max_len, config.d_model)), persistent=False)
        self.transformer = torch.nn.Transformer(
            config.d_model, config.nhead, config.num_encoder_layers, config.num_decoder_layers, config.dim_feedforward,
            dropout=0.0, activation=config.activation, layer_norm_eps=config.layer_norm_eps, batch_first=True,
            norm_first=config.norm_first)
        self.generator = torch.nn.Linear(config.d_model, config.vocab_size)
        self.scale = math.sqrt(config.d_model)

    def embed(self, embedding, ids):
        return embedding(ids) * self.scale + self.pe[:ids.shape[1]]

    def forward(self, src, tgt_in):
        mask = torch.nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], dtype=self.pe.dtype)
        decoded = self.transformer(self.embed(self.src_embedding, src), self.embed(self.tgt_embedding, tgt_in),
                                   tgt_mask=mask, tgt_is_causal=True)
        return self.generator(decoded)


def seq2seq_case(config: TransformerConfig = CONFIG, src_steps: int = 5, tgt_steps: int = 4) -> Case:
    def inputs(dtype, rng):
        return {"src": rng.integers(0, config.vocab_size, size=(B, src_steps), dtype=np.int64),
                "tgt_in": rng.integers(0, config.vocab_size, size=(B, tgt_steps), dtype=np.int64)}

    return Case(module=MODULE, build=lambda m, dtype, rng: m.Seq2SeqTransformer(config, dtype=dtype, rng=rng),
                inputs=inputs, differentiable=(), output_names=("logits",),
                references={"torch.nn (Embedding, table, Transformer, Linear)": torch_module_reference(
                    lambda dtype: TorchSeq2SeqTransformer(config), differentiable=())})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_seq2seq_transformer_parity(norm_first, dtype):
    check_parity(seq2seq_case(dataclasses.replace(CONFIG, norm_first=norm_first)), dtype)


def test_seq2seq_transformer_gradcheck():
    """d_model 4: a LayerNorm over 2 features outputs only +-1, whose gradient vanishes."""
    gradcheck_numpy(seq2seq_case(dataclasses.replace(CONFIG, dim_feedforward=3, vocab_size=5, num_decoder_layers=1),
                                 src_steps=3, tgt_steps=2))


def test_greedy_decode_agrees_across_trees_and_with_teacher_forcing():
    """The three trees decode the same ids; each step's id is the argmax of the teacher-forced logits
    fed BOS and the ids before it (the decoder rereads the prefix, so both paths compute the same)."""
    rng = np.random.default_rng(4)
    src = rng.integers(0, CONFIG.vocab_size, size=(3, 5), dtype=np.int64)
    models = {tree: get_module(tree, MODULE).Seq2SeqTransformer(CONFIG, dtype="float64", rng=np.random.default_rng(1))
              for tree in TREES}
    decoded = {tree: as_numpy(model.eval().greedy_decode(tree_tensor(tree, src), 5, 1)) if tree != "numpy"
               else models["numpy"].greedy_decode(src, 5, 1) for tree, model in models.items()}
    assert decoded["numpy"].dtype == np.int64 and decoded["numpy"].shape == (3, 5)
    for tree in TREES[1:]:
        np.testing.assert_array_equal(decoded[tree], decoded["numpy"])
    tgt_in = np.concatenate([np.ones((3, 1), np.int64), decoded["numpy"][:, :-1]], axis=1)
    np.testing.assert_array_equal(models["numpy"].forward(src, tgt_in).argmax(axis=-1), decoded["numpy"])


# ---- errors -----------------------------------------------------------------------------------

OWNER = "Transformer"
BAD_ARGUMENTS = {
    "d_model 0": ((0, 1), {}, ValueError, f"{OWNER}: d_model must be an int >= 1, got 0"),
    "no encoder layers": ((4, 2, 0), {}, ValueError, f"{OWNER}: num_encoder_layers must be an int >= 1, got 0"),
    "no decoder layers": ((4, 2, 1, 0), {}, ValueError, f"{OWNER}: num_decoder_layers must be an int >= 1, got 0"),
    "nhead not dividing": ((6, 4, 1, 1, 8), {}, ValueError,
                           "TransformerEncoderLayer: d_model (6) must be divisible by nhead (4)"),
    "dropout 1": ((4, 2), {"dropout": 1.0}, ValueError, f"{OWNER}: dropout must be in [0.0, 1.0), got 1.0"),
    "activation tanh": ((4, 2), {"activation": "tanh"}, ValueError,
                        f"{OWNER}: activation must be one of ('relu', 'gelu'), got 'tanh'"),
    "layer_norm_eps 0": ((4, 2), {"layer_norm_eps": 0.0}, ValueError, f"{OWNER}: layer_norm_eps must be > 0, got 0.0"),
    "batch_first int": ((4, 2), {"batch_first": 1}, TypeError,
                        f"{OWNER}: batch_first must be a bool (True or False), got 1"),
    "rng seed": ((4, 2), {"rng": 0}, TypeError,
                 f"{OWNER}: rng must be a numpy.random.Generator (np.random.default_rng(seed)) or None, got int"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_ARGUMENTS))
def test_bad_constructor_arguments_raise_one_clear_error(what, tree):
    args, kwargs, error, message = BAD_ARGUMENTS[what]
    assert_raises_exactly(error, message, lambda: get_module(tree, MODULE).Transformer(*args, **kwargs))


def bad_inputs():
    """What -> (src, tgt, keyword inputs, error, message), for ``Transformer(4, 2, 1, 2, 5)``."""
    rng = np.random.default_rng(8)
    src, tgt = rng.standard_normal((S, B, E)), rng.standard_normal((T, B, E))
    keys = "encoder.layers.0, decoder.layers.0, decoder.layers.1"
    return {
        "src 2-d": (src[:, 0], tgt, {}, ValueError, f"{OWNER}: src must have 3 dimensions, got shape (4, 4)"),
        "tgt float32": (src, tgt.astype("float32"), {}, TypeError,
                        f"{OWNER}: tgt must have dtype float64, got float32 (cast it explicitly)"),
        "tgt width": (src, tgt[..., :2], {}, ValueError, f"{OWNER}: tgt must have shape (..., 4), got (3, 2, 2)"),
        "batch sizes differ": (src, tgt[:, :1], {}, ValueError,
                               f"{OWNER}: src and tgt must have the same batch size (axis 1), got 2 and 1"),
        "dropout_masks keys": (src, tgt, {"dropout_masks": {"encoder.layers.0": {}}}, ValueError,
                               f"{OWNER}: dropout_masks must be None or a dict with exactly the keys {keys} (one dict "
                               "of keep-masks per layer), got keys ['encoder.layers.0']"),
        "dropout_masks without dropout": (src, tgt, {"dropout_masks": {key: {} for key in keys.split(", ")}},
                                          ValueError, "TransformerEncoderLayer: dropout_masks was given but dropout is "
                                          "off (dropout == 0 or eval mode)"),
        "tgt_is_causal without mask": (src, tgt, {"tgt_is_causal": True}, ValueError,
                                       "MultiheadAttention: is_causal is only a hint that attn_mask is the causal mask "
                                       "(torch's rule): pass the (T, S) causal attn_mask too"),
    }


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(bad_inputs()))
def test_bad_inputs_raise_one_clear_error(what, tree):
    src, tgt, kwargs, error, message = bad_inputs()[what]
    model = build(tree, E, H, 1, 2, F)
    assert_raises_exactly(error, message, lambda: model(tree_tensor(tree, src), tree_tensor(tree, tgt), **kwargs))


@pytest.mark.parametrize("tree", TREES)
def test_dropout_in_training_needs_its_masks(tree):
    """Training with ``dropout > 0`` needs every layer's masks (randomness is an input); ``eval()`` needs none."""
    rng = np.random.default_rng(9)
    src, tgt = (tree_tensor(tree, rng.standard_normal(shape)) for shape in ((S, B, E), (T, B, E)))
    model = build(tree, E, H, 1, 1, F, dropout=0.5)
    assert_raises_exactly(ValueError, "TransformerEncoderLayer: dropout is on (training, dropout > 0), so dropout_masks, "
                          "a dict with keys self_attn, dropout1, dropout, dropout2 (bool, True = keep), must be given, "
                          "got None", lambda: model(src, tgt))
    model.eval()
    model(src, tgt)


@pytest.mark.parametrize("tree", TREES)
def test_stacks_refuse_what_is_not_a_layer_list(tree):
    module = get_module(tree, MODULE)
    assert_raises_exactly(TypeError, "TransformerEncoder: layers must be a non-empty list of TransformerEncoderLayer, "
                          "got []", lambda: module.TransformerEncoder([]))
    layer = get_module(tree, "modern.decoder").TransformerDecoderLayer(4, 2, 5, rng=np.random.default_rng(0))
    assert_raises_exactly(TypeError, "TransformerDecoder: norm must be None or a LayerNorm, got str",
                          lambda: module.TransformerDecoder([layer], "norm"))


@pytest.mark.parametrize("tree", TREES)
def test_seq2seq_transformer_refuses_bad_inputs(tree):
    model = get_module(tree, MODULE).Seq2SeqTransformer(CONFIG, dtype="float64", rng=np.random.default_rng(0))
    src = np.zeros((2, 5), np.int64)
    assert_raises_exactly(ValueError, "Seq2SeqTransformer: src and tgt_in must have the same batch size, got 2 and 1",
                          lambda: model(tree_tensor(tree, src), tree_tensor(tree, src[:1])))
    assert_raises_exactly(ValueError, "SinusoidalPositionalEncoding: positions 0..6 (offset 0 + sequence length 7) do "
                          "not fit max_len=6; build it with max_len >= 7", lambda: model(tree_tensor(tree, np.zeros((2, 7), np.int64)),
                                                      tree_tensor(tree, src)))
    assert_raises_exactly(TypeError, "Seq2SeqTransformer: config must be an ml100.configs.TransformerConfig, got dict "
                          "{}; build one with TransformerConfig.from_dict(...)",
                          lambda: get_module(tree, MODULE).Seq2SeqTransformer({}))


def test_config_refuses_d_model_not_divisible_by_nhead():
    with pytest.raises(ConfigError, match=re.escape("TransformerConfig: d_model must be divisible by nhead (3), got 32")):
        TransformerConfig(nhead=3)


# ---- the example ------------------------------------------------------------------------------

@pytest.fixture
def example(monkeypatch):
    """The example, with its data replaced by a failure: refusals come before any work."""
    module = load_script("examples/train_transformer.py")

    def no_data(args):
        raise AssertionError("the data was drawn before the arguments were checked")

    monkeypatch.setattr(module, "make_data", no_data)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--d-model", "0"], "argument --d-model: expected an integer >= 1, got '0'"),
    (["--nhead", "3"], "argument --d-model: TransformerConfig: d_model must be divisible by nhead (3), got 32"),
    (["--activation", "tanh"], "argument --activation: invalid choice: 'tanh'"),
    (["--max-len-table", "9"], "unrecognized arguments: --max-len-table 9"),
    (["--min-len", "5", "--max-len", "4"], "argument --min-len: 5 is more than --max-len 4"),
    (["--backend", "tf", "--compare"], "--compare trains every backend, so --backend tf would be ignored"),
    (["--train-size", "10"], "argument --batch-size: 64 is more than the 10 training strings"),
])
def test_example_refuses_bad_arguments_before_any_work(example, argv, message, capsys):
    assert message in refusal(example.main, argv, capsys)


def test_example_trains_three_backends_to_one_curve(tmp_path, capsys):
    """A tiny float64 run of all three backends: one loss curve (to 1e-12), the plot, and the last line."""
    path = tmp_path / "curves.png"
    load_script("examples/train_transformer.py").main(
        ["--compare", "--dtype", "float64", "--epochs", "1", "--train-size", "24", "--test-size", "4",
         "--batch-size", "8", "--min-len", "2", "--max-len", "3", "--d-model", "4", "--nhead", "2",
         "--dim-feedforward", "6", "--num-encoder-layers", "1", "--plot", str(path)])
    out = capsys.readouterr().out.strip().splitlines()
    difference = float(re.search(r"over 3 steps: (\S+)", out[-2]).group(1))
    assert difference < 1e-12
    assert path.stat().st_size > 0
    assert re.fullmatch(r"sequence accuracy: \d\.\d{3}", out[-1])
