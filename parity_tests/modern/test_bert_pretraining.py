"""Day 53: BERT pre-training (Hugging Face's ``BertForPreTraining``: MLM head tied to the word table, NSP head) in three trees,
and the neutral 80/10/10 masking ``ml100.mlm.mask_tokens``.

Reference: ``transformers.BertForPreTraining`` built offline from a small ``BertConfig`` (eager attention,
dropout 0), fed the canonical state through :func:`canonical_to_hf_pretraining` (which adds the two tied
aliases ``cls.predictions.decoder.weight`` and ``cls.predictions.decoder.bias``). Prediction logits, NSP
logits, the loss (MLM + NSP cross-entropy) and every parameter gradient agree in float64 and float32: Hugging
Face computes this loss with a plain ``CrossEntropyLoss`` in the model's dtype (unlike GPT-2's float32 cast),
so the reference needs no patch. The key biases are left out as in day 52's test (their gradient is 0 in
exact arithmetic: rounding noise no relative tolerance compares; ``test_bert.py`` checks them).

The ids, labels and mask are integers: the special-values pass has no float input to corrupt (it reruns the
case unchanged). No reference takes dropout masks: the dropout case is the trees' own parity plus the
finite-difference check.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import torch
from transformers import BertConfig as HFBertConfig
from transformers import BertForPreTraining as HFBertForPreTraining

from ml100.backends import get_module
from ml100.checks import LM_IGNORE_INDEX
from ml100.configs import BertConfig
from ml100.mlm import mask_tokens
from parity_tests.harness import (TREES, Case, assert_no_failures, assert_raises_exactly, check_parity, compare_results,
                                  gradcheck_numpy, run_numpy, run_torch)
from parity_tests.modern.test_bert import CONVERTERS, KEY_BIAS, Called, without_key_bias

MODULE = "modern.bert_pretraining"
B, T = 2, 5
CONFIG = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                    max_position_embeddings=T, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
DROPOUT = BertConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=12,
                     max_position_embeddings=4, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)
#: The smallest model for finite differences; no padding row (its zero lookup gradient is nn.Embedding's
#: rule, not the derivative finite differences measure).
TINY = BertConfig(vocab_size=6, hidden_size=4, num_hidden_layers=1, num_attention_heads=2, intermediate_size=6,
                  max_position_embeddings=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  pad_token_id=None)
#: Hugging Face's aliases of tied tensors: decoder name -> the canonical tensor it is.
TIED_ALIASES = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                "cls.predictions.decoder.bias": "cls.predictions.bias"}


def canonical_to_hf_pretraining(state: dict) -> dict:
    """The canonical state -> ``BertForPreTraining.state_dict()``: the same names and layouts plus the two
    tied aliases (the decoder is the word table and the head's bias)."""
    return {**state, **{alias: state[name] for alias, name in TIED_ALIASES.items()}}


def hf_model(config: BertConfig, dtype: str) -> HFBertForPreTraining:
    """Hugging Face's pre-training model with the same architecture, built offline, eager attention."""
    return HFBertForPreTraining(HFBertConfig(**config.to_dict(), attn_implementation="eager")).to(getattr(torch, dtype))


class HFCalled(torch.nn.Module):
    """``BertForPreTraining`` called as the trees are: ``(prediction_logits, seq_relationship_logits, loss)``."""

    def __init__(self, model: HFBertForPreTraining):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids, labels, next_sentence_label):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         labels=labels, next_sentence_label=next_sentence_label)
        return out.prediction_logits, out.seq_relationship_logits, out.loss


def hf_reference(config: BertConfig):
    def run(state, inputs, cotangents, dtype):
        model = hf_model(config, dtype).eval()
        model.load_state_dict({name: torch.from_numpy(value) for name, value in canonical_to_hf_pretraining(state).items()})
        return run_torch(HFCalled(model), inputs, (), cotangents, without_key_bias(dict(model.named_parameters())))
    return run


def pretraining_inputs(config: BertConfig, batch: int = B, steps: int = T, dropout: bool = False):
    """Ids corrupted by :func:`mask_tokens` (position 0 is [CLS], never selected; the selection rate is
    raised so a short sequence has targets), the last sequence padded after 2 tokens, two segments, NSP
    labels 0 and 1 and, with dropout, one keep-mask per site (True = keep)."""
    def draw(dtype, rng):
        ids = rng.integers(0, config.vocab_size, (batch, steps))
        special = np.zeros((batch, steps), dtype=np.int64)
        special[:, 0] = 1
        uniforms = rng.random((2, batch, steps))
        corrupted, labels = mask_tokens(ids, special, uniforms[0], uniforms[1],
                                        rng.integers(0, config.vocab_size, (batch, steps)), mask_token_id=1,
                                        mlm_probability=0.6)
        # At least one target, or the mean over none would be 0 / 0.
        labels[0, 1] = ids[0, 1]
        mask = np.ones((batch, steps), dtype=np.int64)
        mask[-1, 2:] = 0
        types = (np.arange(steps)[None, :] >= steps // 2).astype(np.int64).repeat(batch, axis=0)
        inputs = {"input_ids": corrupted, "attention_mask": mask, "token_type_ids": types, "labels": labels,
                  "next_sentence_label": np.arange(batch, dtype=np.int64) % 2}
        if dropout:
            inputs.update({name: rng.random(shape) >= config.dropout_p(name)
                           for name, shape in config.dropout_shapes(batch, steps).items()})
        return inputs
    return draw


def pretraining_case(config: BertConfig, steps: int = T, dropout: bool = False) -> Case:
    draw = pretraining_inputs(config, steps=steps, dropout=dropout)
    names = tuple(draw("float64", np.random.default_rng(0)))
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: Called(m.BertForPreTraining(config, dtype=dtype, rng=rng), names),
        inputs=draw,
        differentiable=(),
        references={} if dropout else {"transformers BertForPreTraining": hf_reference(config)},
        output_names=("prediction_logits", "seq_relationship_logits", "loss"),
        empty_batch_opt_out="the loss is a mean over the masked positions: none in an empty batch, 0 / 0 "
                            "(test_empty_batch_without_labels runs B = 0 without a loss)",
    )


CASES = {
    "padding, segments, MLM + NSP loss, Hugging Face reference": lambda: pretraining_case(CONFIG),
    "training with dropout masks": lambda: pretraining_case(DROPOUT, steps=4, dropout=True),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name](), dtype)


def test_gradcheck_numpy():
    gradcheck_numpy(pretraining_case(TINY, steps=3))


def test_decoder_is_tied_and_its_gradient_sums_both_uses():
    """The word table is the decoder: no ``cls.predictions.decoder.*`` in any tree's state; its gradient in
    the NumPy tree is the lookup's plus the decoder's, and the padding row (no lookup gradient) still gets
    the decoder's share, as in Hugging Face."""
    rng = np.random.default_rng(3)
    inputs = pretraining_inputs(CONFIG)("float64", rng)
    for tree in TREES:
        state = get_module(tree, MODULE).BertForPreTraining(CONFIG).canonical_state_dict()
        assert not set(TIED_ALIASES) & set(state), tree
    model = get_module("numpy", MODULE).BertForPreTraining(CONFIG, dtype="float64", rng=rng)
    logits, nsp, loss = model(**inputs)
    model.backward(np.zeros_like(logits), np.zeros_like(nsp))
    table = model.canonical_grads()["bert.embeddings.word_embeddings.weight"]
    assert np.abs(table[CONFIG.pad_token_id]).max() > 1e-6
    # Without the decoder's share, the padding row gets nothing.
    lookup_only = get_module("numpy", "modern.bert").BertModel(CONFIG, dtype="float64")
    hidden, pooled = lookup_only(**{name: inputs[name] for name in ("input_ids", "attention_mask", "token_type_ids")})
    lookup_only.backward(np.ones_like(hidden), np.ones_like(pooled))
    assert np.all(lookup_only.canonical_grads()["embeddings.word_embeddings.weight"][CONFIG.pad_token_id] == 0)


def test_numpy_model_used_twice_sums_gradients():
    """Two forwards, two backwards (LIFO) in the NumPy tree = autograd through the sum of both losses in torch."""
    case = pretraining_case(CONFIG)
    rng = np.random.default_rng(7)
    first, second = case.inputs("float64", rng), case.inputs("float64", rng)
    models = {tree: get_module(tree, MODULE).BertForPreTraining(CONFIG, dtype="float64", rng=np.random.default_rng(0))
              for tree in ("numpy", "torch")}
    models["torch"].load_canonical_state_dict(models["numpy"].canonical_state_dict())
    numpy_model = models["numpy"]
    numpy_model.zero_grad()
    for inputs in (first, second):
        numpy_model(**inputs)
    for _ in range(2):
        numpy_model.backward(np.zeros((B, T, CONFIG.vocab_size)), np.zeros((B, 2)))
    total = sum(models["torch"](**{name: torch.from_numpy(value) for name, value in inputs.items()})[2]
                for inputs in (first, second))
    total.backward()
    grads = numpy_model.canonical_grads()
    for name, param in models["torch"].named_parameters():
        if name.endswith(KEY_BIAS):
            continue
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_empty_batch_without_labels():
    """B = 0 without labels: every tree returns empty logits of the right shapes and no loss."""
    empty = np.zeros((0, T), dtype=np.int64)
    for tree in TREES:
        logits, nsp, loss = get_module(tree, MODULE).BertForPreTraining(CONFIG, dtype="float64")(CONVERTERS[tree](empty))
        assert tuple(logits.shape) == (0, T, CONFIG.vocab_size) and tuple(nsp.shape) == (0, 2) and loss is None, tree


def test_state_names_match_hugging_face():
    """The canonical state plus the tied aliases is ``BertForPreTraining.state_dict()``: same names and shapes."""
    reference = {name: tuple(value.shape) for name, value in hf_model(CONFIG, "float32").state_dict().items()}
    for tree in TREES:
        state = canonical_to_hf_pretraining(get_module(tree, MODULE).BertForPreTraining(CONFIG).canonical_state_dict())
        assert {name: value.shape for name, value in state.items()} == reference, tree


def test_mask_tokens_80_10_10():
    """The rule on hand-picked uniforms, then its frequencies on many draws: 15% of non-special positions
    selected; of those 80% [MASK], 10% a random id, 10% unchanged; labels -100 elsewhere."""
    ids = np.array([[2, 5, 6, 7, 8, 3]])
    special = np.array([[1, 0, 0, 0, 0, 1]])
    selection = np.array([[0.0, 0.1, 0.1, 0.1, 0.5, 0.0]])
    action = np.array([[0.0, 0.3, 0.85, 0.95, 0.0, 0.0]])
    random_ids = np.full((1, 6), 9)
    corrupted, labels = mask_tokens(ids, special, selection, action, random_ids, mask_token_id=4)
    np.testing.assert_array_equal(corrupted, [[2, 4, 9, 7, 8, 3]])
    np.testing.assert_array_equal(labels, [[LM_IGNORE_INDEX, 5, 6, 7, LM_IGNORE_INDEX, LM_IGNORE_INDEX]])
    rng = np.random.default_rng(0)
    shape = (200, 100)
    ids = rng.integers(10, 1000, shape)
    special = np.zeros(shape, dtype=np.int64)
    special[:, 0] = 1
    corrupted, labels = mask_tokens(ids, special, rng.random(shape), rng.random(shape), rng.integers(5, 1000, shape), 4)
    selected = labels != LM_IGNORE_INDEX
    assert not selected[:, 0].any()
    assert abs(selected[:, 1:].mean() - 0.15) < 0.01
    assert abs((corrupted[selected] == 4).mean() - 0.8) < 0.02
    assert abs((corrupted[selected] == ids[selected]).mean() - 0.1) < 0.02
    np.testing.assert_array_equal(corrupted[~selected], ids[~selected])


def error_cases():
    """(what, call(module, convert) -> None, error type, message): one bad argument each, the same text in every tree."""
    ids = np.zeros((1, 3), dtype=np.int64)
    return [
        ("labels without next_sentence_label",
         lambda m, cv: m.BertForPreTraining(CONFIG)(cv(ids), labels=cv(ids)), ValueError,
         "BertForPreTraining: labels and next_sentence_label must be given together (the loss is MLM + NSP), got only labels"),
        ("label out of range",
         lambda m, cv: m.BertForPreTraining(CONFIG)(cv(ids), labels=cv(np.array([[-100, 30, 1]])),
                                                   next_sentence_label=cv(np.array([0]))), ValueError,
         "BertForPreTraining: labels must lie in [0, 30) or be -100 (ignored), got [30]"),
        ("labels of another shape",
         lambda m, cv: m.BertForPreTraining(CONFIG)(cv(ids), labels=cv(np.zeros((1, 2), dtype=np.int64)),
                                                   next_sentence_label=cv(np.array([0]))), ValueError,
         "BertForPreTraining: labels must have shape (1, 3), got (1, 2)"),
        ("next sentence label not 0/1",
         lambda m, cv: m.BertForPreTraining(CONFIG)(cv(ids), labels=cv(ids), next_sentence_label=cv(np.array([2]))),
         ValueError, "BertForPreTraining: next_sentence_label must hold 0 (sentence B follows A) or 1 (B is random), got [2]"),
        ("a dict for a config", lambda m, cv: m.BertForPreTraining(CONFIG.to_dict()), TypeError,
         f"BertForPreTraining: config must be an ml100.configs.BertConfig, got dict {CONFIG.to_dict()!r}; build one with "
         "BertConfig.from_dict(...)"),
    ]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, call, error, message", error_cases(), ids=[case[0] for case in error_cases()])
def test_errors(tree, what, call, error, message):
    assert_raises_exactly(error, message, lambda: call(get_module(tree, MODULE), CONVERTERS[tree]))


@pytest.mark.parametrize("changes, message", [
    ({"mlm_probability": 1.5}, "mask_tokens: mlm_probability must lie in [0, 1], got 1.5"),
    ({"action_uniforms": np.ones((1, 3))}, "mask_tokens: action_uniforms must be floats in [0, 1) of shape (1, 3), got "
                                           "float64 of shape (1, 3)"),
    ({"special_tokens_mask": np.full((1, 3), 2)}, "mask_tokens: special_tokens_mask must hold 0/1 (or bool) of shape "
                                                  "(1, 3), got int64 of shape (1, 3)"),
])
def test_mask_tokens_errors(changes, message):
    arguments = {"input_ids": np.zeros((1, 3), dtype=np.int64), "special_tokens_mask": np.zeros((1, 3)),
                 "selection_uniforms": np.zeros((1, 3)), "action_uniforms": np.zeros((1, 3)),
                 "random_ids": np.zeros((1, 3), dtype=np.int64), "mask_token_id": 4}
    assert_raises_exactly(ValueError, message, lambda: mask_tokens(**{**arguments, **changes}))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 3), steps=st.integers(2, 5), heads=st.sampled_from([1, 2, 4]), vocab=st.integers(3, 20),
       seed=st.integers(0, 2**16))
def test_fuzz_numpy_matches_hugging_face(batch, steps, heads, vocab, seed):
    """Random small models, masked ids, right padding and NSP labels: the NumPy tree's logits, loss and every
    gradient but the key biases equal ``BertForPreTraining``'s (float64)."""
    config = BertConfig(vocab_size=vocab, hidden_size=8, num_hidden_layers=1, num_attention_heads=heads,
                        intermediate_size=6, max_position_embeddings=steps, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(seed)
    model = get_module("numpy", MODULE).BertForPreTraining(config, dtype="float64", rng=rng)
    state = {name: rng.uniform(-1.0, 1.0, value.shape) for name, value in model.canonical_state_dict().items()}
    model.load_canonical_state_dict(state)
    inputs = pretraining_inputs(config, batch, steps)("float64", rng)
    lengths = rng.integers(1, steps + 1, batch)
    inputs["attention_mask"] = (np.arange(steps)[None, :] < lengths[:, None]).astype(np.int64)
    cotangents = [rng.standard_normal((batch, steps, vocab)), rng.standard_normal((batch, 2)), np.ones(())]
    ours = run_numpy(Called(model, tuple(inputs)), inputs, (), cotangents)
    theirs = hf_reference(config)(state, inputs, cotangents, "float64")
    assert_no_failures(compare_results({"numpy": ours, "transformers BertForPreTraining": theirs}, "float64"), "fuzz")
