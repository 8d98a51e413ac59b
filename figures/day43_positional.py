"""Day 43's figure: the sinusoidal position table, and its dot products depending only on p - q.

Left, the NumPy tree's interleaved ``sinusoidal_table`` for 100 positions and 64 columns (sine on
even columns, cosine on odd ones): the first pairs turn fastest. Right, the Gram matrix
``PE @ PE.T``: constant along every diagonal, since ``PE[p] . PE[q] = sum_i cos((p - q) w_i)``,
largest (C/2 = 32) on the main diagonal. Nothing is random.

    python figures/day43_positional.py [--out DIR]   # writes DIR/day43_positional.png
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from numpy_impl.modern.positional import sinusoidal_table  # noqa: E402

NAME = "day43_positional"
POSITIONS, WIDTH = 100, 64


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "days" / "img", help="folder the PNG is written to")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    table = sinusoidal_table(POSITIONS, WIDTH, dtype="float64")  # (L, C)
    gram = table @ table.T  # (L, L)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    image = left.imshow(table, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    left.set_title("PE[p, j]: sin on even j, cos on odd j", fontsize=10)
    left.set_xlabel("column j")
    left.set_ylabel("position p")
    figure.colorbar(image, ax=left, shrink=0.8)
    image = right.imshow(gram, cmap="viridis", interpolation="nearest")
    right.set_title("PE[p] · PE[q]: constant along each diagonal (depends on p - q)", fontsize=10)
    right.set_xlabel("position q")
    right.set_ylabel("position p")
    figure.colorbar(image, ax=right, shrink=0.8)
    figure.savefig(args.out / f"{NAME}.png", dpi=100, bbox_inches="tight")
    print(f"wrote {args.out / f'{NAME}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
