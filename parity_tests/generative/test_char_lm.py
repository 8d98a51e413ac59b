"""Day 27: the character-level LSTM language model in three trees, against a torch.nn model built from
``nn.Embedding``, ``nn.LSTM`` and ``nn.Linear`` (same state dict) and a Keras one fed converted
weights; sampling from uniforms passed in; the Trainer's ``max_norm``; the corpus module; the example."""
import dataclasses
import re

import numpy as np
import pytest
import torch

from ml100.backends import get_module
from ml100.configs import CharLMConfig
from ml100.text import (ALPHABET, CORPUS_MODULES, CharVocab, choose_next, normalize, random_windows,
                        sequential_windows, stdlib_corpus, train_validation_split)
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy, keras_lstm_weights,
                                  random_weights, run_tf, to_tree, torch_module_reference)
from parity_tests.scripts import load_script, refusal

CONFIG = CharLMConfig(vocab_size=7, embedding_dim=3, hidden_size=4, num_layers=2)
BATCH, STEPS = 2, 5


class TorchCharLM(torch.nn.Module):
    """The reference: torch.nn's own layers, named as the trees name theirs (the canonical state)."""

    def __init__(self, config: CharLMConfig, with_hx: bool):
        super().__init__()
        self.embedding = torch.nn.Embedding(config.vocab_size, config.embedding_dim)
        self.lstm = torch.nn.LSTM(config.embedding_dim, config.hidden_size, config.num_layers, batch_first=True)
        self.head = torch.nn.Linear(config.hidden_size, config.vocab_size)
        self.with_hx = with_hx

    def forward(self, ids, h_0=None, c_0=None):
        output, (h_n, c_n) = self.lstm(self.embedding(ids), (h_0, c_0) if self.with_hx else None)
        return self.head(output), (h_n, c_n)


def keras_char_lm_reference(config: CharLMConfig, with_hx: bool):
    """``keras.layers.Embedding`` -> one ``keras.layers.LSTM`` per layer -> ``keras.layers.Dense``, fed
    the canonical state through :func:`keras_char_lm_weights`; both LSTM biases map to Keras's one."""
    import keras
    import tensorflow as tf

    def run(state, inputs, cotangents, dtype):
        embedding = keras.layers.Embedding(config.vocab_size, config.embedding_dim, dtype=dtype)
        embedding.build((None, None))
        lstms = [keras.layers.LSTM(config.hidden_size, return_sequences=True, return_state=True, dtype=dtype)
                 for _ in range(config.num_layers)]
        head = keras.layers.Dense(config.vocab_size, dtype=dtype)
        head.build((None, config.hidden_size))
        params = {"embedding.weight": embedding.embeddings}
        for layer, lstm in enumerate(lstms):
            lstm.build((None, None, config.embedding_dim if layer == 0 else config.hidden_size))
            cell = lstm.cell
            params.update({f"lstm.weight_ih_l{layer}": cell.kernel, f"lstm.weight_hh_l{layer}": cell.recurrent_kernel,
                           f"lstm.bias_ih_l{layer}": cell.bias, f"lstm.bias_hh_l{layer}": cell.bias})
        params.update({"head.weight": head.kernel, "head.bias": head.bias})
        for name, value in keras_char_lm_weights(state, config.num_layers).items():
            params[name].assign(value)

        def call(ids, h_0=None, c_0=None):
            x, finals = embedding(ids), []
            for layer, lstm in enumerate(lstms):
                initial = [h_0[layer], c_0[layer]] if with_hx else None
                x, h, c = lstm(x, initial_state=initial)
                finals.append((h, c))
            return head(x), (tf.stack([h for h, _ in finals]), tf.stack([c for _, c in finals]))

        def to_canonical(grads):
            # The embedding's gradient is tf.IndexedSlices; kernels are stored (in, out).
            dense = {name: tf.convert_to_tensor(g).numpy() for name, g in grads.items()}
            return {name: value if name == "embedding.weight" or "bias" in name else value.T
                    for name, value in dense.items()}

        return run_tf(call, inputs, tuple(name for name in inputs if name != "ids"), cotangents, params, to_canonical)

    return run


def keras_char_lm_weights(state: dict, num_layers: int) -> dict[str, np.ndarray]:
    """Canonical -> Keras, keyed by the canonical name whose variable receives it: the embedding table
    as is, each LSTM layer as the harness's :func:`keras_lstm_weights` (kernel ``W_ih.T``, recurrent kernel
    ``W_hh.T``, bias ``b_ih + b_hh``), the head's kernel ``weight.T``."""
    weights = {"embedding.weight": state["embedding.weight"], "head.weight": state["head.weight"].T,
               "head.bias": state["head.bias"]}
    lstm_state = {name[len("lstm."):]: value for name, value in state.items() if name.startswith("lstm.")}
    for layer in range(num_layers):
        kernel, recurrent, bias = keras_lstm_weights(lstm_state, f"l{layer}")
        weights.update({f"lstm.weight_ih_l{layer}": kernel, f"lstm.weight_hh_l{layer}": recurrent,
                        f"lstm.bias_ih_l{layer}": bias})
    return weights


def char_lm_with_state(m, config, dtype, rng):
    """The tree's ``CharLM`` taking ``(ids, h_0, c_0)`` as three inputs (the harness passes arrays, not
    the pair ``hx``); the NumPy backward already returns ``(grad_h_0, grad_c_0)``."""
    class CharLM(m.CharLM):
        def forward(self, ids, h_0, c_0):
            return super().forward(ids, (h_0, c_0))

    return CharLM(config, dtype=dtype, rng=rng)


def char_lm_case(config=CONFIG, with_hx=True, keras=False, steps=STEPS):
    def inputs(dtype, rng):
        values = {"ids": rng.integers(0, config.vocab_size, size=(BATCH, steps), dtype=np.int64)}
        if with_hx:
            values["h_0"] = rng.standard_normal((config.num_layers, BATCH, config.hidden_size)).astype(dtype)
            values["c_0"] = rng.standard_normal((config.num_layers, BATCH, config.hidden_size)).astype(dtype)
        return values

    def build(m, dtype, rng):
        return char_lm_with_state(m, config, dtype, rng) if with_hx else m.CharLM(config, dtype=dtype, rng=rng)

    differentiable = ("h_0", "c_0") if with_hx else ()
    references = {"torch.nn (Embedding, LSTM, Linear)": torch_module_reference(
        lambda dtype: TorchCharLM(config, with_hx), differentiable=differentiable)}
    if keras:
        references["keras.layers (Embedding, LSTM, Dense)"] = keras_char_lm_reference(config, with_hx)
    return Case(module="generative.char_lm", build=build, inputs=inputs, differentiable=differentiable,
                references=references, output_names=("logits", "h_n", "c_n"),
                batch_axes={"ids": 0, "h_0": 1, "c_0": 1})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_char_lm_parity_with_state_against_torch_and_keras(dtype):
    check_parity(char_lm_case(keras=True), dtype)


def test_char_lm_parity_without_state_one_layer():
    check_parity(char_lm_case(dataclasses.replace(CONFIG, num_layers=1), with_hx=False, keras=True), "float64")


def test_char_lm_gradcheck():
    gradcheck_numpy(char_lm_case(dataclasses.replace(CONFIG, hidden_size=3), steps=3))


def test_canonical_names_are_torch_nn_names():
    names = list(TorchCharLM(CONFIG, True).state_dict())
    for tree in TREES:
        model = get_module(tree, "generative.char_lm").CharLM(CONFIG, rng=np.random.default_rng(0))
        assert list(model.canonical_state_dict()) == names
    assert names[:2] == ["embedding.weight", "lstm.weight_ih_l0"] and names[-2:] == ["head.weight", "head.bias"]


def test_numpy_char_lm_used_twice_matches_autograd():
    """Two chained windows (the second starts from the first's state), backpropagated in reverse order:
    the NumPy model sums both uses' gradients as autograd does, and hands back the state's gradient."""
    model = get_module("numpy", "generative.char_lm").CharLM(CONFIG, dtype="float64")
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(1))
    model.load_canonical_state_dict(state)
    reference = TorchCharLM(CONFIG, True).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    rng = np.random.default_rng(2)
    ids1, ids2 = rng.integers(0, CONFIG.vocab_size, size=(2, BATCH, STEPS))
    g1, g2 = rng.standard_normal((2, BATCH, STEPS, CONFIG.vocab_size))
    h0, c0 = rng.standard_normal((2, CONFIG.num_layers, BATCH, CONFIG.hidden_size))

    _, hx1 = model(ids1, (h0, c0))
    model(ids2, hx1)
    grad_h1, grad_c1 = model.backward(g2)
    grad_h0, _ = model.backward(g1, grad_h1, grad_c1)

    t_h0 = torch.tensor(h0, requires_grad=True)
    t_logits1, t_hx1 = reference(torch.from_numpy(ids1), t_h0, torch.tensor(c0))
    t_logits2, _ = reference(torch.from_numpy(ids2), *t_hx1)
    ((t_logits1 * torch.from_numpy(g1)).sum() + (t_logits2 * torch.from_numpy(g2)).sum()).backward()
    np.testing.assert_allclose(grad_h0, t_h0.grad.numpy(), rtol=1e-9, atol=1e-12)
    ours = model.canonical_grads()
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(ours[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def loaded_models(dtype: str, config=CONFIG) -> dict:
    models = {tree: get_module(tree, "generative.char_lm").CharLM(config, dtype=dtype) for tree in TREES}
    state = random_weights(models["numpy"].canonical_state_dict(), np.random.default_rng(3))
    for model in models.values():
        model.load_canonical_state_dict(state)
    return models


@pytest.mark.parametrize("temperature", [0.0, 0.8, 2.0])
def test_sampling_writes_the_same_text_in_every_tree(temperature):
    models = loaded_models("float64")
    prompt = np.array([1, 4, 2], dtype=np.int64)
    uniforms = np.random.default_rng(4).random(20)
    texts = {tree: get_module(tree, "generative.char_lm").sample(model, prompt, 20, temperature, uniforms)
             for tree, model in models.items()}
    for tree in TREES:
        assert texts[tree].dtype == np.int64 and texts[tree].shape == (20,)
        np.testing.assert_array_equal(texts[tree], texts["numpy"], err_msg=tree)
    # Above temperature 0 the draws matter: more than one character is chosen.
    assert temperature == 0.0 or len(set(texts["numpy"].tolist())) > 1


def test_greedy_sampling_is_the_torch_reference_argmax():
    """Temperature 0 feeds back ``argmax`` of torch.nn's logits step by step (the uniforms are unused)."""
    models = loaded_models("float64")
    reference = TorchCharLM(CONFIG, False).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in models["numpy"].canonical_state_dict().items()})
    ids = [3]
    with torch.no_grad():
        for _ in range(8):
            logits, _ = reference(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    sample = get_module("numpy", "generative.char_lm").sample
    generated = sample(models["numpy"], np.array([3], np.int64), 8, 0.0, np.zeros(8))
    assert generated.tolist() == ids[1:]


def test_choose_next_is_the_inverse_cdf_of_the_tempered_softmax():
    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    # CDF 0.1, 0.3, 0.6, 1.0: u in [0.3, 0.6) is class 2, and so on.
    assert [choose_next(logits, 1.0, u) for u in (0.0, 0.09, 0.11, 0.35, 0.59, 0.61, 0.999999)] == [0, 0, 1, 2, 2, 3, 3]
    # A high temperature flattens: with tau -> inf the classes become equally likely.
    assert choose_next(logits, 1e9, 0.26) == 1
    # Greedy: the first of tied maxima.
    assert choose_next(np.array([0.0, 2.0, 2.0, 1.0]), 0.0, 0.9) == 1


#: (arguments of sample after the model, exception, message): refused by every tree.
BAD_SAMPLING = {
    "negative temperature": ((np.array([1], np.int64), 3, -0.5, np.zeros(3)), ValueError,
                             "sample: temperature must be in [0.0, inf), got -0.5"),
    "uniform of 1": ((np.array([1], np.int64), 2, 1.0, np.array([0.5, 1.0])), ValueError,
                     "sample: uniforms must be 2 floats in [0, 1), one per generated character"),
    "too few uniforms": ((np.array([1], np.int64), 3, 1.0, np.zeros(2)), ValueError,
                         "sample: uniforms must have shape (3,), got (2,)"),
    "empty prompt": ((np.zeros(0, np.int64), 3, 1.0, np.zeros(3)), ValueError,
                     "sample: prompt_ids must hold at least one id (the model continues a text)"),
    "int32 prompt": ((np.array([1], np.int32), 3, 1.0, np.zeros(3)), TypeError,
                     "sample: prompt_ids must have dtype int64, got int32 (cast it explicitly)"),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("what", list(BAD_SAMPLING))
def test_bad_sampling_arguments_raise_one_clear_error(what, tree):
    args, error, message = BAD_SAMPLING[what]
    m = get_module(tree, "generative.char_lm")
    model = m.CharLM(CONFIG, rng=np.random.default_rng(0))
    assert_raises_exactly(error, message, lambda: m.sample(model, *args))


@pytest.mark.parametrize("tree", TREES)
def test_bad_model_inputs_raise_one_clear_error(tree):
    model = get_module(tree, "generative.char_lm").CharLM(CONFIG, rng=np.random.default_rng(0))
    assert_raises_exactly(ValueError, "CharLM: ids must have 2 dimensions, got shape (5,)",
                          lambda: model(to_tree(tree, np.zeros(5, np.int64))))
    assert_raises_exactly(TypeError, "CharLM: ids must have dtype int64, got int32 (cast it explicitly)",
                          lambda: model(to_tree(tree, np.zeros((1, 5), np.int32))))
    assert_raises_exactly(TypeError, "CharLM: config must be an ml100.configs.CharLMConfig, got dict {'vocab_size': 7}; "
                                     "build one with CharLMConfig.from_dict(...)",
                          lambda: get_module(tree, "generative.char_lm").CharLM({"vocab_size": 7}))


def test_config_refuses_a_zero_size():
    with pytest.raises(ValueError, match=re.escape("CharLMConfig: hidden_size must be an int >= 1, got 0")):
        CharLMConfig(vocab_size=5, hidden_size=0)


def test_trainer_max_norm_clips_like_torch_clip_grad_norm():
    """One SGD step of every tree's Trainer with ``max_norm`` equals torch.nn's model, loss,
    ``torch.nn.utils.clip_grad_norm_`` and the SGD update; the norm before clipping exceeds max_norm."""
    max_norm, lr = 0.1, 0.1
    models = loaded_models("float64")
    state = models["numpy"].canonical_state_dict()
    windows = np.random.default_rng(5).integers(0, CONFIG.vocab_size, size=(BATCH, STEPS + 1))
    x, y = windows[:, :-1], windows[:, 1:]
    reference = TorchCharLM(CONFIG, False).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    logits, _ = reference(torch.from_numpy(x))
    torch.nn.functional.cross_entropy(logits.reshape(-1, CONFIG.vocab_size), torch.from_numpy(y).reshape(-1)).backward()
    assert torch.nn.utils.clip_grad_norm_(list(reference.parameters()), max_norm) > 2 * max_norm
    expected = {name: (param - lr * param.grad).detach().numpy() for name, param in reference.named_parameters()}
    for tree, model in models.items():
        m = get_module(tree, "foundations.trainer")
        optimizer = get_module(tree, "foundations.optim").SGD(dict(model.named_parameters()), lr=lr)
        loss_fn = get_module(tree, "generative.char_lm").NextCharLoss(dtype="float64")
        m.Trainer(model, loss_fn, optimizer, max_norm=max_norm).train_step(x, y)
        updated = model.canonical_state_dict()
        for name in expected:
            np.testing.assert_allclose(updated[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=f"{tree} {name}")


# ---- the corpus module ------------------------------------------------------------------------

def test_corpus_is_deterministic_normalized_and_large_enough():
    text = stdlib_corpus()
    assert text == stdlib_corpus()
    assert len(text) > 200_000 and set(text) <= set(ALPHABET)
    assert "  " not in text and "\n\n\n" not in text
    assert list(CORPUS_MODULES) == sorted(CORPUS_MODULES)


def test_normalize_lowercases_strips_accents_and_collapses_space():
    assert normalize("Café\t  Ünïcode ✓\n\n\n\nEnd  ") == "cafe unicode\n\nend "


def test_vocab_round_trip_and_errors():
    vocab = CharVocab("hello world")
    assert vocab.chars == sorted(" dehlorw") and len(vocab) == 8
    ids = vocab.encode("low")
    assert ids.dtype == np.int64 and vocab.decode(ids) == "low"
    with pytest.raises(ValueError, match="not in the vocabulary: 'axz'"):
        vocab.encode("zax")
    with pytest.raises(ValueError, match=re.escape("ids must be in [0, 8)")):
        vocab.decode(np.array([8], np.int64))


def test_windows_and_split():
    ids = np.arange(100, dtype=np.int64)
    train, validation = train_validation_split(ids)
    assert train.tolist() == list(range(90)) and validation.tolist() == list(range(90, 100))
    windows = random_windows(train, 6, 10, np.random.default_rng(0))  # (6, 11)
    assert windows.shape == (6, 11)
    # Consecutive ids (the input of step t+1 is the target of step t) that stay inside the split.
    assert (np.diff(windows, axis=1) == 1).all() and windows.max() < 90
    ordered = sequential_windows(validation, 3)  # (3, 4)
    assert ordered.tolist() == [[90, 91, 92, 93], [93, 94, 95, 96], [96, 97, 98, 99]]
    with pytest.raises(ValueError, match="a window of 11 ids needs at least that many, got 10"):
        random_windows(validation, 1, 10, np.random.default_rng(0))


# ---- the example ------------------------------------------------------------------------------

@pytest.fixture
def example(monkeypatch):
    """The example, with its corpus replaced by a failure: refusals come before any work."""
    module = load_script("examples/train_char_lm.py")

    def no_corpus():
        raise AssertionError("the corpus was read before the arguments were checked")

    monkeypatch.setattr(module, "stdlib_corpus", no_corpus)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--hidden-size", "0"], "argument --hidden-size: expected an integer >= 1, got '0'"),
    (["--seq-len", "0"], "argument --seq-len: expected an integer >= 1, got '0'"),
    (["--max-norm", "-1"], "argument --max-norm: expected a finite number > 0, got '-1'"),
    (["--vocab-size", "9"], "unrecognized arguments: --vocab-size 9"),
    (["--plot", "curves.png"], "--plot needs --compare"),
])
def test_example_refuses_bad_arguments_before_any_work(example, argv, message, capsys):
    assert message in refusal(example.main, argv, capsys)


def test_example_refuses_a_corpus_too_short_for_one_batch(capsys):
    with pytest.raises(SystemExit):
        load_script("examples/train_char_lm.py").main(["--corpus-chars", "1000", "--batch-size", "64"])
    assert "argument --corpus-chars: 900 training characters are fewer than one batch" in capsys.readouterr().err


def test_example_trains_three_backends_to_one_curve(capsys):
    """A tiny float64 run of all three backends: one loss curve, the same samples, the last line."""
    load_script("examples/train_char_lm.py").main(
        ["--compare", "--dtype", "float64", "--epochs", "1", "--corpus-chars", "1200", "--batch-size", "4",
         "--seq-len", "8", "--hidden-size", "8", "--embedding-dim", "4", "--sample-length", "12"])
    out = capsys.readouterr().out.strip().splitlines()
    difference = float(re.search(r"over \d+ steps: (\S+)", out[-2]).group(1))
    assert difference < 1e-12
    samples = [line for line in out if line.startswith("'")]
    assert len(samples) == 9 and samples[0:3] == samples[3:6] == samples[6:9]
    assert re.fullmatch(r"validation loss: \d+\.\d{4}", out[-1])
