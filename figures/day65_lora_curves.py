"""Day 65: the three backends' loss curves for ``examples/train_lora.py`` — pre-training every parameter,
then LoRA fine-tuning only the adapters — on a tiny model in float64, where they coincide. A thin call of
the example's ``main`` with ``--compare --plot`` (about a minute on 2 shared cores).

    python figures/day65_lora_curves.py [--out DIR]   # writes DIR/day65_lora_curves.png
"""
import importlib
import sys
from pathlib import Path

from make_all import start_figure

ARGUMENTS = ["--compare", "--dtype", "float64", "--corpus-chars", "6000", "--finetune-chars", "4000", "--vocab-size",
             "280", "--n-embd", "8", "--n-layer", "1", "--n-head", "2", "--n-positions", "24", "--seq-len", "8",
             "--batch-size", "4", "--epochs", "1", "--finetune-epochs", "1"]


def main(argv=None) -> int:
    path = start_figure(__file__, argv)
    # The examples are scripts, not a package: imported from their folder.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    return importlib.import_module("train_lora").main(ARGUMENTS + ["--plot", str(path)])


if __name__ == "__main__":
    sys.exit(main())
