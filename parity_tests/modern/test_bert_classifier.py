"""Day 54: BERT for sequence classification (Hugging Face's ``BertForSequenceClassification``) in three trees.

Reference: ``transformers.BertForSequenceClassification`` built offline from a small ``BertConfig`` with
``num_labels=3`` (eager attention, dropout 0), fed the canonical state unchanged (the names are its
``state_dict``'s: ``bert.*``, ``classifier.*``). Logits, the cross-entropy loss and every parameter gradient
agree in float64 and float32 (the key biases left out, as day 52's test explains; ``test_bert.py`` checks
them). The inputs are integers: the special-values pass reruns the case unchanged. No reference takes
dropout masks: the dropout case is the trees' own parity plus the finite-difference check.
"""
import numpy as np
import pytest
import torch
from transformers import BertConfig as HFBertConfig
from transformers import BertForSequenceClassification as HFBertForSequenceClassification

from ml100.backends import get_module
from ml100.configs import BertConfig
from parity_tests.harness import TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy, run_torch
from parity_tests.modern.test_bert import CONVERTERS, KEY_BIAS, Called, without_key_bias

MODULE = "modern.bert_classifier"
B, T, LABELS = 3, 5, 3
CONFIG = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                    max_position_embeddings=T, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
DROPOUT = BertConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=12,
                     max_position_embeddings=4, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)
#: The smallest model for finite differences, without a padding row (day 52's reason).
TINY = BertConfig(vocab_size=6, hidden_size=4, num_hidden_layers=1, num_attention_heads=2, intermediate_size=6,
                  max_position_embeddings=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  pad_token_id=None)
TINY_DROPOUT = BertConfig(**{**TINY.to_dict(), "hidden_dropout_prob": 0.2, "attention_probs_dropout_prob": 0.3})


def hf_model(config: BertConfig, dtype: str) -> HFBertForSequenceClassification:
    """Hugging Face's classifier with the same architecture and ``num_labels``, built offline, eager attention."""
    hf_config = HFBertConfig(**config.to_dict(), num_labels=LABELS, attn_implementation="eager")
    return HFBertForSequenceClassification(hf_config).to(getattr(torch, dtype))


class HFCalled(torch.nn.Module):
    """``BertForSequenceClassification`` called as the trees are: ``(logits, loss)``."""

    def __init__(self, model: HFBertForSequenceClassification):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids, labels):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels)
        return out.logits, out.loss


def hf_reference(config: BertConfig):
    def run(state, inputs, cotangents, dtype):
        model = hf_model(config, dtype).eval()
        model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
        return run_torch(HFCalled(model), inputs, (), cotangents, without_key_bias(dict(model.named_parameters())))
    return run


def classifier_inputs(config: BertConfig, batch: int = B, steps: int = T, dropout: bool = False):
    """Ids, the last sequence padded after 2 tokens, two segments, one label per class and, with dropout,
    one keep-mask per encoder site plus ``"dropout"`` ``(B, E)`` for the classifier."""
    def draw(dtype, rng):
        mask = np.ones((batch, steps), dtype=np.int64)
        mask[-1, 2:] = 0
        inputs = {"input_ids": rng.integers(0, config.vocab_size, (batch, steps)), "attention_mask": mask,
                  "token_type_ids": (np.arange(steps)[None, :] >= steps // 2).astype(np.int64).repeat(batch, axis=0),
                  "labels": np.arange(batch, dtype=np.int64) % LABELS}
        if dropout:
            shapes = {**config.dropout_shapes(batch, steps), "dropout": (batch, config.hidden_size)}
            inputs.update({name: rng.random(shape) >= config.hidden_dropout_prob if name == "dropout"
                           else rng.random(shape) >= config.dropout_p(name) for name, shape in shapes.items()})
        return inputs
    return draw


class ClassifierCalled(Called):
    """As day 53's ``Called``, with the classifier's ``"dropout"`` mask gathered too."""

    def arguments(self, tensors) -> dict:
        named = dict(zip(self.names, tensors))
        masks = {name: named.pop(name) for name in list(named) if name.startswith(("embeddings.", "encoder.", "dropout"))}
        return {**named, "dropout_masks": masks or None}


def classifier_case(config: BertConfig, steps: int = T, dropout: bool = False) -> Case:
    draw = classifier_inputs(config, steps=steps, dropout=dropout)
    names = tuple(draw("float64", np.random.default_rng(0)))
    return Case(
        module=MODULE,
        build=lambda m, dtype, rng: ClassifierCalled(m.BertForSequenceClassification(config, LABELS, dtype=dtype, rng=rng),
                                                     names),
        inputs=draw,
        differentiable=(),
        references={} if dropout else {"transformers BertForSequenceClassification": hf_reference(config)},
        output_names=("logits", "loss"),
        empty_batch_opt_out="the loss is a mean over the batch: 0 / 0 for B = 0 "
                            "(test_empty_batch_without_labels runs B = 0 without a loss)",
    )


CASES = {
    "padding, segments, cross-entropy, Hugging Face reference": lambda: classifier_case(CONFIG),
    "training with dropout masks": lambda: classifier_case(DROPOUT, steps=4, dropout=True),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_parity(name, dtype):
    check_parity(CASES[name](), dtype)


@pytest.mark.parametrize("case", [lambda: classifier_case(TINY, steps=3),
                                  lambda: classifier_case(TINY_DROPOUT, steps=3, dropout=True)], ids=["eval", "dropout"])
def test_gradcheck_numpy(case):
    gradcheck_numpy(case())


def test_numpy_model_used_twice_sums_gradients():
    """Two forwards, two backwards (LIFO) in the NumPy tree = autograd through the sum of both losses in torch."""
    rng = np.random.default_rng(7)
    draw = classifier_inputs(CONFIG)
    first, second = draw("float64", rng), draw("float64", rng)
    models = {tree: get_module(tree, MODULE).BertForSequenceClassification(CONFIG, LABELS, dtype="float64",
                                                                            rng=np.random.default_rng(0))
              for tree in ("numpy", "torch")}
    models["torch"].load_canonical_state_dict(models["numpy"].canonical_state_dict())
    numpy_model = models["numpy"]
    for inputs in (first, second):
        numpy_model(**inputs)
    for _ in range(2):
        numpy_model.backward(np.zeros((B, LABELS)))
    total = sum(models["torch"](**{name: torch.from_numpy(value) for name, value in inputs.items()})[1]
                for inputs in (first, second))
    total.backward()
    grads = numpy_model.canonical_grads()
    for name, param in models["torch"].named_parameters():
        if not name.endswith(KEY_BIAS):
            np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_empty_batch_without_labels():
    """B = 0 without labels: every tree returns empty logits ``(0, num_labels)`` and no loss."""
    empty = np.zeros((0, T), dtype=np.int64)
    for tree in TREES:
        logits, loss = get_module(tree, MODULE).BertForSequenceClassification(CONFIG, LABELS, dtype="float64")(
            CONVERTERS[tree](empty))
        assert tuple(logits.shape) == (0, LABELS) and loss is None, tree


def test_state_names_match_hugging_face():
    """The canonical state is ``BertForSequenceClassification.state_dict()``: same names and shapes, no conversion."""
    reference = {name: tuple(value.shape) for name, value in hf_model(CONFIG, "float32").state_dict().items()}
    for tree in TREES:
        state = get_module(tree, MODULE).BertForSequenceClassification(CONFIG, LABELS).canonical_state_dict()
        assert {name: value.shape for name, value in state.items()} == reference, tree


def error_cases():
    """(what, call(module, convert) -> None, error type, message): one bad argument each, the same text in every tree."""
    ids = np.zeros((2, 3), dtype=np.int64)
    return [
        ("label out of range",
         lambda m, cv: m.BertForSequenceClassification(CONFIG, LABELS)(cv(ids), labels=cv(np.array([0, 3]))), ValueError,
         "BertForSequenceClassification: labels must be classes in [0, 3) (num_labels), got [3]"),
        ("labels of another shape",
         lambda m, cv: m.BertForSequenceClassification(CONFIG, LABELS)(cv(ids), labels=cv(np.array([0]))), ValueError,
         "BertForSequenceClassification: labels must have shape (2,), got (1,)"),
        ("float labels",
         lambda m, cv: m.BertForSequenceClassification(CONFIG, LABELS)(cv(ids), labels=cv(np.zeros(2))), TypeError,
         "BertForSequenceClassification: labels must have dtype int64, got float64 (cast it explicitly)"),
        ("one label", lambda m, cv: m.BertForSequenceClassification(CONFIG, 1), ValueError,
         "BertForSequenceClassification: num_labels must be an int >= 2, got 1"),
        ("dropout on without the classifier's mask",
         lambda m, cv: m.BertForSequenceClassification(DROPOUT)(cv(ids)), ValueError,
         "BertForSequenceClassification: dropout is on (training, hidden_dropout_prob > 0), so dropout_masks must hold "
         "'dropout', the classifier's keep-mask (bool, True = keep) of shape (B, 8)"),
        ("classifier mask in eval mode",
         lambda m, cv: m.BertForSequenceClassification(CONFIG)(cv(ids), dropout_masks={"dropout": cv(np.ones((2, 16), bool))}),
         ValueError, "BertForSequenceClassification: dropout_masks['dropout'] given but dropout is off (eval mode or "
                     "hidden_dropout_prob = 0)"),
    ]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what, call, error, message", error_cases(), ids=[case[0] for case in error_cases()])
def test_errors(tree, what, call, error, message):
    assert_raises_exactly(error, message, lambda: call(get_module(tree, MODULE), CONVERTERS[tree]))
