"""Day 62: the tiny YOLO's detections on held-out scenes, drawn by ``examples/train_detector.py``
with its defaults (NumPy tree, 1 500 training scenes, 6 epochs, seed 0: the run whose AP@0.5,
0.959, is on the page; about 70 s of training on 2 idle cores).
True boxes white and dashed; predictions with score >= 0.5 in their class colour with the score.

    python figures/day62_detections.py [--out DIR]   # writes DIR/day62_detections.png
"""
import importlib
import sys
from pathlib import Path

from make_all import start_figure


def main():
    path = start_figure(__file__)
    # The examples are scripts, not a package: imported from their folder.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    importlib.import_module("train_detector").main(
        ["--backend", "numpy", "--detections", str(path)])


if __name__ == "__main__":
    main()
