"""Day 29: Luong dot attention on a toy reversal alignment, and the same with the last two keys
masked — the heat map ``parity_tests/generative/test_seq2seq_attention.py`` checks in every tree
(``write_heatmap``)."""
from make_all import start_figure

if __name__ == "__main__":
    path = start_figure(__file__)
    from parity_tests.generative.test_seq2seq_attention import write_heatmap

    write_heatmap(path)
