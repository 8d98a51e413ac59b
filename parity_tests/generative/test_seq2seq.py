"""Days 28-29: the GRU encoder-decoder with teacher forcing and its Luong-attention variant in three
trees, against a torch.nn model built from ``nn.Embedding``, ``nn.GRU`` and ``nn.Linear`` (same state
dict) and a Keras one (``Embedding``, ``GRU(reset_after=True)``, ``Dense``, ``Attention``) fed
converted weights; greedy decoding; the toy task; the example."""
import dataclasses
import re

import numpy as np
import pytest
import torch

from ml100 import toy_tasks
from ml100.backends import get_module
from ml100.configs import ConfigError, Seq2SeqConfig
from parity_tests.harness import (TREES, Case, assert_raises_exactly, check_parity, gradcheck_numpy, keras_gru_to_torch,
                                  random_weights, run_tf, to_tree, torch_gru_to_keras, torch_module_reference)
from parity_tests.scripts import load_script, refusal

CONFIG = Seq2SeqConfig(vocab_size=7, embedding_dim=3, hidden_size=4, num_layers=2)
BATCH, SRC_STEPS, TGT_STEPS = 2, 5, 4
MODELS = ("Seq2Seq", "Seq2SeqAttention")


class TorchSeq2Seq(torch.nn.Module):
    """The reference: torch.nn's own layers, named as the trees name theirs (the canonical state), and
    Luong's attention written with torch ops (torch.nn has no such layer)."""

    def __init__(self, config: Seq2SeqConfig, attention: bool):
        super().__init__()
        vocab, width, hidden, layers = config.vocab_size, config.embedding_dim, config.hidden_size, config.num_layers
        self.encoder_embedding = torch.nn.Embedding(vocab, width)
        self.encoder = torch.nn.GRU(width, hidden, layers, batch_first=True)
        self.decoder_embedding = torch.nn.Embedding(vocab, width)
        self.decoder = torch.nn.GRU(width, hidden, layers, batch_first=True)
        self.score_mode = config.score_mode if attention else None
        if attention and config.score_mode == "general":
            self.attention = torch.nn.Module()
            self.attention.key_proj = torch.nn.Linear(hidden, hidden, bias=False)
        self.out = torch.nn.Linear(2 * hidden if attention else hidden, vocab)

    def forward(self, src, tgt_in):
        memory, state = self.encoder(self.encoder_embedding(src))  # (N, S, H), (L, N, H)
        decoded, _ = self.decoder(self.decoder_embedding(tgt_in), state)  # (N, T, H)
        if self.score_mode is None:
            return self.out(decoded)
        keys = self.attention.key_proj(memory) if self.score_mode == "general" else memory  # (N, S, H)
        weights = torch.softmax(decoded @ keys.transpose(1, 2), dim=-1)  # (N, T, S)
        return self.out(torch.cat([weights @ memory, decoded], dim=-1)), weights


def keras_seq2seq_weights(state: dict, config: Seq2SeqConfig) -> dict[str, np.ndarray]:
    """Canonical -> Keras, keyed by the canonical name whose variable receives it: embedding tables
    as they are, each GRU layer through the harness's :func:`torch_gru_to_keras` (gates [z, r, h], bias
    ``(2, 3H)``), Luong's ``W`` (``key_proj.weight``) and the head's weight transposed (Dense kernels)."""
    weights = {name: state[name] for name in ("encoder_embedding.weight", "decoder_embedding.weight", "out.bias")}
    weights["out.weight"] = state["out.weight"].T
    if "attention.key_proj.weight" in state:
        weights["attention.key_proj.weight"] = state["attention.key_proj.weight"].T
    for gru in ("encoder", "decoder"):
        for layer in range(config.num_layers):
            names = [f"{gru}.{kind}_l{layer}" for kind in ("weight_ih", "weight_hh", "bias_ih")]
            converted = torch_gru_to_keras(*(state[f"{gru}.{kind}_l{layer}"]
                                             for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
            weights.update(zip(names, converted))
    return weights


def keras_seq2seq_reference(config: Seq2SeqConfig, attention: bool):
    """``keras.layers.Embedding`` -> one ``GRU(reset_after=True)`` per layer (the decoder's started
    from the encoder's final states) -> ``Attention`` (dot scores on keys through a bias-free
    ``Dense`` for ``"general"``) -> ``Dense``, fed :func:`keras_seq2seq_weights`."""
    import keras
    import tensorflow as tf

    def run(state, inputs, cotangents, dtype):
        hidden, params = config.hidden_size, {}
        layers = {}
        for side in ("encoder", "decoder"):
            embedding = keras.layers.Embedding(config.vocab_size, config.embedding_dim, dtype=dtype)
            embedding.build((None, None))
            params[f"{side}_embedding.weight"] = embedding.embeddings
            grus = [keras.layers.GRU(hidden, return_sequences=True, return_state=True, reset_after=True, dtype=dtype)
                    for _ in range(config.num_layers)]
            for layer, gru in enumerate(grus):
                gru.build((None, None, config.embedding_dim if layer == 0 else hidden))
                params.update({f"{side}.weight_ih_l{layer}": gru.cell.kernel,
                               f"{side}.weight_hh_l{layer}": gru.cell.recurrent_kernel,
                               f"{side}.bias_ih_l{layer}": gru.cell.bias})
            layers[side] = (embedding, grus)
        score = keras.layers.Attention(score_mode="dot", dtype=dtype)
        key_proj = None
        if attention and config.score_mode == "general":
            key_proj = keras.layers.Dense(hidden, use_bias=False, dtype=dtype)
            key_proj.build((None, hidden))
            params["attention.key_proj.weight"] = key_proj.kernel
        head = keras.layers.Dense(config.vocab_size, dtype=dtype)
        head.build((None, 2 * hidden if attention else hidden))
        params.update({"out.weight": head.kernel, "out.bias": head.bias})
        for name, value in keras_seq2seq_weights(state, config).items():
            params[name].assign(value)

        def run_grus(side, ids, initial):
            embedding, grus = layers[side]
            x, finals = embedding(ids), []
            for layer, gru in enumerate(grus):
                x, h = gru(x, initial_state=None if initial is None else [initial[layer]])
                finals.append(h)
            return x, finals

        def call(src, tgt_in):
            memory, finals = run_grus("encoder", src, None)
            decoded, _ = run_grus("decoder", tgt_in, finals)
            if not attention:
                return head(decoded)
            keys = memory if key_proj is None else key_proj(memory)
            context, weights = score([decoded, memory, keys], return_attention_scores=True)
            return head(tf.concat([context, decoded], axis=-1)), weights

        def to_canonical(grads):
            # Embedding gradients are tf.IndexedSlices; Dense kernels are (in, out); GRUs back through the gate order.
            dense = {name: tf.convert_to_tensor(g).numpy() for name, g in grads.items()}
            out = {name: value.T if name in ("out.weight", "attention.key_proj.weight") else value
                   for name, value in dense.items() if name.startswith(("encoder_embedding", "decoder_embedding",
                                                                        "attention", "out"))}
            for side in ("encoder", "decoder"):
                for layer in range(config.num_layers):
                    names = [f"{side}.{kind}_l{layer}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                    out.update(zip(names, keras_gru_to_torch(*(dense[name] for name in names[:3]))))
            return out

        return run_tf(call, inputs, (), cotangents, params, to_canonical)

    return run


def seq2seq_case(name="Seq2SeqAttention", config=CONFIG, keras=True, src_steps=SRC_STEPS, tgt_steps=TGT_STEPS):
    attention = name == "Seq2SeqAttention"

    def inputs(dtype, rng):
        return {"src": rng.integers(0, config.vocab_size, size=(BATCH, src_steps), dtype=np.int64),
                "tgt_in": rng.integers(0, config.vocab_size, size=(BATCH, tgt_steps), dtype=np.int64)}

    references = {"torch.nn (Embedding, GRU, Linear)": torch_module_reference(
        lambda dtype: TorchSeq2Seq(config, attention), differentiable=())}
    if keras:
        references["keras.layers (Embedding, GRU, Attention, Dense)"] = keras_seq2seq_reference(config, attention)
    return Case(module="generative.seq2seq", build=lambda m, dtype, rng: getattr(m, name)(config, dtype=dtype, rng=rng),
                inputs=inputs, differentiable=(), references=references,
                output_names=("logits", "weights") if attention else ("logits",))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", MODELS)
def test_seq2seq_parity_against_torch_and_keras(name, dtype):
    check_parity(seq2seq_case(name), dtype)


def test_seq2seq_attention_dot_scores_one_layer():
    check_parity(seq2seq_case(config=dataclasses.replace(CONFIG, num_layers=1, score_mode="dot")), "float64")


@pytest.mark.parametrize("name", MODELS)
def test_seq2seq_gradcheck(name):
    tiny = dataclasses.replace(CONFIG, vocab_size=4, embedding_dim=2, hidden_size=2)
    gradcheck_numpy(seq2seq_case(name, tiny, keras=False, src_steps=3, tgt_steps=2))


def test_canonical_names_are_torch_nn_names():
    for name, attention in zip(MODELS, (False, True)):
        names = list(TorchSeq2Seq(CONFIG, attention).state_dict())
        for tree in TREES:
            model = getattr(get_module(tree, "generative.seq2seq"), name)(CONFIG, rng=np.random.default_rng(0))
            assert list(model.canonical_state_dict()) == names, (tree, name)


def test_numpy_attention_weights_cotangent_matches_autograd():
    """A cotangent on the returned weights too (the NumPy backward's second argument)."""
    model = get_module("numpy", "generative.seq2seq").Seq2SeqAttention(CONFIG, dtype="float64")
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(1))
    model.load_canonical_state_dict(state)
    reference = TorchSeq2Seq(CONFIG, True).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    rng = np.random.default_rng(2)
    src, tgt_in = rng.integers(0, CONFIG.vocab_size, (BATCH, SRC_STEPS)), rng.integers(0, CONFIG.vocab_size, (BATCH, TGT_STEPS))
    g_logits = rng.standard_normal((BATCH, TGT_STEPS, CONFIG.vocab_size))
    g_weights = rng.standard_normal((BATCH, TGT_STEPS, SRC_STEPS))
    model(src, tgt_in)
    model.backward(g_logits, g_weights)
    logits, weights = reference(torch.from_numpy(src), torch.from_numpy(tgt_in))
    ((logits * torch.from_numpy(g_logits)).sum() + (weights * torch.from_numpy(g_weights)).sum()).backward()
    ours = model.canonical_grads()
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(ours[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_numpy_seq2seq_used_twice_matches_autograd():
    """Two batches through one model, backpropagated in reverse order: the NumPy model sums both
    uses' gradients (every layer's cache stacks), as autograd does."""
    model = get_module("numpy", "generative.seq2seq").Seq2SeqAttention(CONFIG, dtype="float64")
    state = random_weights(model.canonical_state_dict(), np.random.default_rng(6))
    model.load_canonical_state_dict(state)
    reference = TorchSeq2Seq(CONFIG, True).double()
    reference.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    rng = np.random.default_rng(7)
    batches = [(rng.integers(0, CONFIG.vocab_size, (BATCH, steps)), rng.integers(0, CONFIG.vocab_size, (BATCH, TGT_STEPS)))
               for steps in (SRC_STEPS, SRC_STEPS - 2)]
    cotangents = rng.standard_normal((2, BATCH, TGT_STEPS, CONFIG.vocab_size))
    for src, tgt_in in batches:
        model(src, tgt_in)
    for cotangent in cotangents[::-1]:
        model.backward(cotangent)
    total = sum((reference(torch.from_numpy(src), torch.from_numpy(tgt_in))[0] * torch.from_numpy(cotangent)).sum()
                for (src, tgt_in), cotangent in zip(batches, cotangents))
    total.backward()
    ours = model.canonical_grads()
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(ours[name], param.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", MODELS)
def test_a_nan_embedding_row_spreads_as_in_torch(name):
    """The inputs are ids (the harness's special-values pass has no float input to change): a NaN in
    one source token's embedding row instead. It reaches every later encoder state, the decoder and
    (with attention) every context: the trees' NaN pattern and values are torch.nn's."""
    models = loaded_models(name)
    state = models["numpy"].canonical_state_dict()
    state["encoder_embedding.weight"][3, 1] = np.nan
    reference = TorchSeq2Seq(CONFIG, name == "Seq2SeqAttention").double()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    src = np.array([[1, 2, 3, 4, 5], [1, 2, 4, 5, 6]], np.int64)
    tgt_in = np.array([[1, 2, 3, 0], [0, 1, 2, 3]], np.int64)
    with torch.no_grad():
        expected = reference(torch.from_numpy(src), torch.from_numpy(tgt_in))
    expected = np.asarray(expected[0] if isinstance(expected, tuple) else expected)
    assert np.isnan(expected[0]).all() and not np.isnan(expected[1]).any()
    for tree, model in models.items():
        model.load_canonical_state_dict(state)
        with get_module(tree, "module").no_grad():
            logits = model(to_tree(tree, src), to_tree(tree, tgt_in))
        logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
        np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=tree)


def loaded_models(name: str, dtype: str = "float64") -> dict:
    models = {tree: getattr(get_module(tree, "generative.seq2seq"), name)(CONFIG, dtype=dtype) for tree in TREES}
    state = random_weights(models["numpy"].canonical_state_dict(), np.random.default_rng(3))
    for model in models.values():
        model.load_canonical_state_dict(state)
    return models


@pytest.mark.parametrize("name", MODELS)
def test_greedy_decoding_is_identical_across_trees_and_the_torch_reference(name):
    models = loaded_models(name)
    src = np.random.default_rng(4).integers(0, CONFIG.vocab_size, (3, SRC_STEPS))
    decoded = {tree: np.asarray(model.greedy_decode(to_tree(tree, src), 6, 1)) for tree, model in models.items()}
    reference = TorchSeq2Seq(CONFIG, name == "Seq2SeqAttention").double()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in models["numpy"].canonical_state_dict().items()})
    # The reference re-runs the teacher-forced model on its own growing output: the same argmax chain.
    ids = torch.ones((3, 1), dtype=torch.int64)
    with torch.no_grad():
        for _ in range(6):
            logits = reference(torch.from_numpy(src), ids)
            logits = logits[0] if isinstance(logits, tuple) else logits
            ids = torch.cat([ids, logits[:, -1:].argmax(dim=-1)], dim=1)
    for tree in TREES:
        assert decoded[tree].dtype == np.int64 and decoded[tree].shape == (3, 6)
        np.testing.assert_array_equal(decoded[tree], ids[:, 1:].numpy(), err_msg=tree)


@pytest.mark.parametrize("tree", TREES)
def test_greedy_decoding_takes_the_first_of_tied_maxima(tree):
    """All-zero head weights: every logit ties, the argmax is id 0 in every tree."""
    model = loaded_models("Seq2Seq")[tree]
    state = model.canonical_state_dict()
    state["out.weight"], state["out.bias"] = np.zeros_like(state["out.weight"]), np.zeros_like(state["out.bias"])
    model.load_canonical_state_dict(state)
    decoded = np.asarray(model.greedy_decode(to_tree(tree, np.ones((2, 3), np.int64)), 4, 1))
    np.testing.assert_array_equal(decoded, np.zeros((2, 4), np.int64))


@pytest.mark.parametrize("tree", TREES)
def test_teacher_forcing_flattens_the_logits_for_the_trainer(tree):
    m = get_module(tree, "generative.seq2seq")
    model = loaded_models("Seq2SeqAttention")[tree]
    rng = np.random.default_rng(5)
    src, tgt_in = rng.integers(0, CONFIG.vocab_size, (BATCH, SRC_STEPS)), rng.integers(0, CONFIG.vocab_size, (BATCH, TGT_STEPS))
    with get_module(tree, "module").no_grad():
        flat = np.asarray(m.TeacherForcing(model, SRC_STEPS)(to_tree(tree, np.concatenate([src, tgt_in], axis=1))))
        logits = np.asarray(model(to_tree(tree, src), to_tree(tree, tgt_in))[0])
    np.testing.assert_array_equal(flat, logits.reshape(BATCH * TGT_STEPS, CONFIG.vocab_size))


@pytest.mark.parametrize("tree", TREES)
def test_bad_inputs_raise_one_clear_error(tree):
    m = get_module(tree, "generative.seq2seq")
    model = m.Seq2SeqAttention(CONFIG, rng=np.random.default_rng(0))
    ids = np.zeros((2, 3), np.int64)
    assert_raises_exactly(TypeError, "Seq2SeqAttention: src must have dtype int64, got int32 (cast it explicitly)",
                          lambda: model(to_tree(tree, ids.astype(np.int32)), to_tree(tree, ids)))
    assert_raises_exactly(ValueError, "Seq2SeqAttention: tgt_in must have 2 dimensions, got shape (3,)",
                          lambda: model(to_tree(tree, ids), to_tree(tree, ids[0])))
    assert_raises_exactly(ValueError, "Seq2SeqAttention: src and tgt_in must have the same batch size, got 2 and 1",
                          lambda: model(to_tree(tree, ids), to_tree(tree, ids[:1])))
    assert_raises_exactly(ValueError, "Seq2SeqAttention: src must hold at least one step, got shape (2, 0)",
                          lambda: model(to_tree(tree, ids[:, :0]), to_tree(tree, ids)))
    assert_raises_exactly(ValueError, "Seq2SeqAttention: src must have 2 dimensions, got shape (3,)",
                          lambda: model.greedy_decode(to_tree(tree, ids[0]), 4, 1))
    assert_raises_exactly(ValueError, "Seq2SeqAttention: max_len must be an int >= 1, got 0",
                          lambda: model.greedy_decode(to_tree(tree, ids), 0, 1))
    assert_raises_exactly(TypeError, "Seq2Seq: config must be an ml100.configs.Seq2SeqConfig, got dict {'vocab_size': 7}; "
                                     "build one with Seq2SeqConfig.from_dict(...)", lambda: m.Seq2Seq({"vocab_size": 7}))


def test_config_refuses_an_unknown_score_mode():
    with pytest.raises(ConfigError, match=re.escape("Seq2SeqConfig: score_mode must be one of: dot, general")):
        Seq2SeqConfig(score_mode="concat")


# ---- the toy task ------------------------------------------------------------------------------

def test_reversal_encoding_lays_out_src_and_shifted_targets():
    src, tgt_in, tgt_out = toy_tasks.encode_reversal([(1, 2, 3), (7,)], max_len=3)
    d = toy_tasks.FIRST_DIGIT_ID
    pad, bos, eos = toy_tasks.PAD_ID, toy_tasks.BOS_ID, toy_tasks.EOS_ID
    assert src.tolist() == [[d + 1, d + 2, d + 3, eos], [d + 7, eos, pad, pad]]
    assert tgt_out.tolist() == [[d + 3, d + 2, d + 1, eos], [d + 7, eos, pad, pad]]
    assert tgt_in.tolist() == [[bos, d + 3, d + 2, d + 1], [bos, d + 7, eos, pad]]
    assert src.dtype == tgt_in.dtype == tgt_out.dtype == np.int64


def test_drawn_strings_are_distinct_in_range_and_avoid_the_held_out_ones():
    rng = np.random.default_rng(0)
    held_out = toy_tasks.draw_strings(50, 2, 3, rng)
    train = toy_tasks.draw_strings(1000, 2, 3, rng, exclude=frozenset(held_out))
    assert len(set(train)) == 1000 and not set(train) & set(held_out)
    assert {len(s) for s in train} == {2, 3} and all(0 <= d <= 9 for s in train for d in s)
    with pytest.raises(ValueError, match=re.escape("cannot draw 1051 distinct strings of lengths 2-3: only 1050")):
        toy_tasks.draw_strings(1051, 2, 3, rng, exclude=frozenset(held_out))
    with pytest.raises(ValueError, match=re.escape("toy_tasks: min_len (3) must not exceed max_len (2)")):
        toy_tasks.draw_strings(1, 3, 2, rng)


def test_sequence_accuracy_counts_whole_rows_only():
    target = np.array([[1, 2, 3], [4, 5, 6]])
    assert toy_tasks.sequence_accuracy(np.array([[1, 2, 3], [4, 5, 0]]), target) == 0.5
    with pytest.raises(ValueError, match="one shape"):
        toy_tasks.sequence_accuracy(target[:, :2], target)


# ---- the example ------------------------------------------------------------------------------

@pytest.fixture
def example(monkeypatch):
    """The example, with its data replaced by a failure: refusals come before any work."""
    module = load_script("examples/train_seq2seq.py")

    def no_data(args):
        raise AssertionError("the data was drawn before the arguments were checked")

    monkeypatch.setattr(module, "make_data", no_data)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--hidden-size", "0"], "argument --hidden-size: expected an integer >= 1, got '0'"),
    (["--score-mode", "concat"], "argument --score-mode: invalid choice: 'concat'"),
    (["--vocab-size", "9"], "unrecognized arguments: --vocab-size 9"),
    (["--min-len", "5", "--max-len", "4"], "argument --min-len: 5 is more than --max-len 4"),
    (["--min-len", "2", "--max-len", "2", "--train-size", "100", "--test-size", "20"],
     "argument --train-size: 100 + --test-size 20 strings are more than the 100 digit strings of lengths 2-2"),
    (["--no-attention", "--plot", "a.png"], "--plot draws the attention weights: it needs --attention"),
    (["--backend", "tf", "--compare"], "--compare trains every backend, so --backend tf would be ignored"),
    (["--train-size", "10"], "argument --batch-size: 64 is more than the 10 training strings"),
])
def test_example_refuses_bad_arguments_before_any_work(example, argv, message, capsys):
    assert message in refusal(example.main, argv, capsys)


def test_example_trains_three_backends_to_one_curve(capsys):
    """A tiny float64 run of all three backends: one loss curve, and the last line."""
    load_script("examples/train_seq2seq.py").main(
        ["--compare", "--dtype", "float64", "--epochs", "1", "--train-size", "24", "--test-size", "4",
         "--batch-size", "8", "--min-len", "2", "--max-len", "3", "--hidden-size", "4", "--embedding-dim", "3"])
    out = capsys.readouterr().out.strip().splitlines()
    difference = float(re.search(r"over 3 steps: (\S+)", out[-2]).group(1))
    assert difference < 1e-12
    assert re.fullmatch(r"sequence accuracy: \d\.\d{3}", out[-1])


def test_example_writes_the_attention_heat_map(tmp_path, capsys):
    path = tmp_path / "attention.png"
    load_script("examples/train_seq2seq.py").main(
        ["--backend", "numpy", "--epochs", "1", "--train-size", "16", "--test-size", "4", "--batch-size", "8",
         "--min-len", "2", "--max-len", "3", "--hidden-size", "4", "--embedding-dim", "2", "--plot", str(path)])
    assert path.stat().st_size > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("sequence accuracy: ")
