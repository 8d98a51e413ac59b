"""Day 47: where the trained Transformer looks when it reverses digits. The PyTorch tree's
``Seq2SeqTransformer`` (``TransformerConfig`` defaults but pre-LN, seed 0) trained for 4 epochs on
8000 strings of 8 digits (Adam, lr 2e-3, the example's loop), then one held-out string decoded
greedily; the heat map is the last decoder layer's cross-attention (mean over heads) for that
string, teacher-forced with the greedy output. Emitting the k-th token it reads source position
``8 - k``: the anti-diagonal. The decoder layers call their attention with ``need_weights=False``,
as torch's do; the script calls the last layer's submodules on the same inputs to get the weights.

    python figures/day47_reversal_attention.py [--out DIR]   # writes DIR/day47_reversal_attention.png
"""
import numpy as np

from make_all import start_figure

SEED, EPOCHS, TRAIN, DIGITS = 0, 4, 8000, 8


def trained_model(torch):
    """The example's training, on the PyTorch tree (one thread: deterministic and quick)."""
    from ml100 import toy_tasks
    from ml100.configs import TransformerConfig
    from ml100.data import batch_indices
    from torch_impl.foundations.losses import CrossEntropyLoss
    from torch_impl.foundations.optim import Adam
    from torch_impl.foundations.trainer import Trainer
    from torch_impl.generative.seq2seq import TeacherForcing
    from torch_impl.modern.transformer import Seq2SeqTransformer

    rng = np.random.default_rng(SEED)
    test = toy_tasks.draw_strings(1, DIGITS, DIGITS, rng)
    train = toy_tasks.draw_strings(TRAIN, DIGITS, DIGITS, rng, exclude=frozenset(test))
    src, tgt_in, tgt_out = toy_tasks.encode_reversal(train, DIGITS)
    config = TransformerConfig(norm_first=True, max_len=DIGITS + 1)
    model = Seq2SeqTransformer(config, dtype="float32", rng=np.random.default_rng(SEED))
    classifier = TeacherForcing(model, DIGITS + 1)
    trainer = Trainer(classifier, CrossEntropyLoss(), Adam(dict(classifier.named_parameters()), lr=2e-3))
    x = np.concatenate([src, tgt_in], axis=1)  # (N, S + T)
    for _ in range(EPOCHS):
        for index in batch_indices(len(x), 64, rng):
            trainer.train_step(x[index], tgt_out[index].reshape(-1))
    return model.eval(), toy_tasks.encode_reversal(test, DIGITS)[0]


def cross_attention(torch, model, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy ids ``(T,)`` and the last decoder layer's cross-attention ``(T, S)`` for one source."""
    from ml100 import toy_tasks

    with torch.no_grad():
        source = torch.from_numpy(src)  # (1, S)
        decoded = model.greedy_decode(source, src.shape[1], toy_tasks.BOS_ID)  # (1, T)
        tgt_in = torch.cat([torch.full((1, 1), toy_tasks.BOS_ID), decoded[:, :-1]], dim=1)  # (1, T)
        transformer = model.transformer
        memory = transformer.encoder(model.embed(model.src_embedding, source))  # (1, S, E)
        causal = transformer.generate_square_subsequent_mask(tgt_in.shape[1])  # (T, T)
        x = model.embed(model.tgt_embedding, tgt_in)  # (1, T, E)
        for layer in transformer.decoder.layers[:-1]:
            x = layer(x, memory, tgt_mask=causal, tgt_is_causal=True)  # (1, T, E)
        last = transformer.decoder.layers[-1]
        # Pre-LN: the cross-attention's queries are norm2 of the stream after the self-attention block.
        queries = x + last.self_attn(*(last.norm1(x),) * 3, attn_mask=causal, need_weights=False)[0]  # (1, T, E)
        _, weights = last.multihead_attn(last.norm2(queries), memory, memory)  # (1, T, S)
    return decoded[0].numpy(), weights[0].numpy()


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt
    import torch

    from ml100 import toy_tasks

    torch.set_num_threads(1)
    model, src = trained_model(torch)
    decoded, weights = cross_attention(torch, model, src)
    names = {toy_tasks.PAD_ID: "PAD", toy_tasks.BOS_ID: "BOS", toy_tasks.EOS_ID: "EOS"}
    text = lambda ids: [names.get(int(i), str(int(i) - toy_tasks.FIRST_DIGIT_ID)) for i in ids]
    figure, axis = plt.subplots(figsize=(5.2, 4.4), constrained_layout=True)
    image = axis.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0)
    axis.set(xticks=range(src.shape[1]), xticklabels=text(src[0]), yticks=range(len(decoded)),
             yticklabels=text(decoded), xlabel="source token (memory position)", ylabel="emitted token (greedy)",
             title="last decoder layer's cross-attention")
    figure.colorbar(image, ax=axis, label="weight (mean over heads)")
    figure.savefig(path, dpi=100)
    print(f"wrote {path}; source {' '.join(text(src[0]))}, decoded {' '.join(text(decoded))}, "
          f"anti-diagonal mean weight {np.mean(np.diag(weights[:-1, ::-1][:, 1:])):.3f}")


if __name__ == "__main__":
    main()
