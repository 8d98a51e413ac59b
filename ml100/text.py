"""Text for the character-level language model (day 27): a corpus, its characters, batches, sampling.

The corpus is gathered at run time, with nothing downloaded or copied: the docstrings of a fixed,
sorted list of Python standard-library modules (:data:`CORPUS_MODULES`) — each module's own, then
those of its public classes, functions and methods defined in it, in sorted name order. The same
Python gives the same text on every run (another Python version may differ slightly).

Normalization keeps a small character set (:data:`ALPHABET`): lower case, everything outside the
alphabet removed (a non-ASCII letter is first decomposed, so ``é`` keeps its ``e``), tabs and runs
of spaces made one space, and runs of blank lines made one blank line.

The vocabulary is the sorted set of characters that occur; ids are ``int64``. The split is
contiguous (the first 90% trains, the rest validates), so no window crosses from one to the other.
Training draws random windows of ``T + 1`` characters (input ``[:-1]``, target ``[1:]``) from a
NumPy ``Generator``; validation reads the non-overlapping windows in order.

Sampling turns logits into a character with the randomness as an *input*: one uniform draw
:math:`u \\in [0, 1)` per character, mapped through the inverse CDF of
:math:`p = \\operatorname{softmax}(z / \\tau)`, the first class :math:`k` with
:math:`\\sum_{j\\le k} p_j > u`. From the same weights and draws every tree writes the same text.
"""
from __future__ import annotations

import importlib
import inspect
import re
import string
import unicodedata

import numpy as np

from .checks import check_input, check_int, check_range, check_rng

#: The standard-library modules whose docstrings make the corpus, sorted.
CORPUS_MODULES = (
    "argparse", "ast", "asyncio.locks", "bisect", "calendar", "collections", "configparser", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "functools",
    "glob", "gzip", "heapq", "hmac", "html.parser", "http.client", "imaplib", "inspect", "ipaddress", "json",
    "logging", "mailbox", "numbers", "optparse", "pathlib", "pickle", "pprint", "queue", "random", "shlex",
    "shutil", "smtplib", "socketserver", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "tokenize", "unittest.case", "urllib.parse", "uuid", "zipfile",
)
#: The characters the normalized corpus may hold.
ALPHABET = string.ascii_lowercase + string.digits + " \n" + ".,;:!?'\"()[]{}<>-_=+*/%#&|@`~^$\\"
#: The share of the corpus used for training (the rest, at the end, validates).
TRAIN_FRACTION = 0.9


def module_docstrings(name: str) -> list[str]:
    """The docstrings of module ``name``: its own, then of each public class, function and method
    defined in it, by sorted name (members imported from elsewhere are left to their own module)."""
    module = importlib.import_module(name)
    docs = [module.__doc__]
    for member_name, member in sorted(vars(module).items()):
        if member_name.startswith("_") or getattr(member, "__module__", None) != name:
            continue
        if inspect.isfunction(member):
            docs.append(member.__doc__)
        elif inspect.isclass(member):
            docs.append(member.__doc__)
            # The class's own methods only: inherited ones are documented where they are defined.
            docs += [method.__doc__ for method_name, method in sorted(vars(member).items())
                     if not method_name.startswith("_") and inspect.isfunction(method)]
    return [inspect.cleandoc(doc) for doc in docs if doc]


def normalize(text: str) -> str:
    """Lower case, :data:`ALPHABET` only (accents stripped first), one space, at most one blank line."""
    # NFKD splits "é" into "e" and a combining accent, which the filter below then drops.
    text = unicodedata.normalize("NFKD", text.lower())
    text = text.replace("\t", " ")
    text = "".join(char for char in text if char in ALPHABET)
    text = re.sub(r" +", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text)


def stdlib_corpus() -> str:
    """The normalized docstrings of :data:`CORPUS_MODULES`, each docstring ending in a blank line."""
    return normalize("\n\n".join(doc for name in CORPUS_MODULES for doc in module_docstrings(name)))


class CharVocab:
    """The sorted characters of a text; ``encode`` maps text to ``int64`` ids, ``decode`` back."""

    def __init__(self, text: str):
        if not text:
            raise ValueError("CharVocab: the text must not be empty")
        self.chars = sorted(set(text))
        self.index = {char: i for i, char in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"CharVocab.encode: characters not in the vocabulary: {''.join(unknown)!r}")
        return np.array([self.index[char] for char in text], dtype=np.int64)  # (L,)

    def decode(self, ids) -> str:
        ids = np.asarray(ids)
        check_input("CharVocab.decode", "ids", ids.shape, ids.dtype, expected_dtype="int64", ndim=1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"CharVocab.decode: ids must be in [0, {len(self)}), got values in [{ids.min()}, {ids.max()}]")
        return "".join(self.chars[i] for i in ids)


def train_validation_split(ids: np.ndarray, train_fraction: float = TRAIN_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """The first ``train_fraction`` of ``ids`` and the rest: contiguous, so no window straddles both."""
    check_range("train_validation_split", "train_fraction", train_fraction, 0.0, 1.0)
    cut = int(len(ids) * train_fraction)
    return ids[:cut], ids[cut:]


def random_windows(ids: np.ndarray, batch_size: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``batch_size`` windows of ``length + 1`` consecutive ids starting at positions drawn from ``rng``:
    ``(N, T+1)``; the model reads ``[:, :-1]`` and predicts ``[:, 1:]``."""
    check_int("random_windows", "batch_size", batch_size, 1)
    check_int("random_windows", "length", length, 1)
    rng = check_rng("random_windows", rng)
    if len(ids) < length + 1:
        raise ValueError(f"random_windows: a window of {length + 1} ids needs at least that many, got {len(ids)}")
    starts = rng.integers(0, len(ids) - length, size=batch_size)  # (N,) every start whose window fits
    return ids[starts[:, None] + np.arange(length + 1)]  # (N, T+1)


def sequential_windows(ids: np.ndarray, length: int) -> np.ndarray:
    """The non-overlapping windows of ``length + 1`` ids (consecutive windows share one id: the next
    one's first input is this one's last target), in order: ``(M, T+1)``; a short tail is left out."""
    check_int("sequential_windows", "length", length, 1)
    count = (len(ids) - 1) // length
    if count == 0:
        raise ValueError(f"sequential_windows: a window of {length + 1} ids needs at least that many, got {len(ids)}")
    return ids[np.arange(count)[:, None] * length + np.arange(length + 1)]  # (M, T+1)


def check_sampling(prompt_ids, length: int, temperature, uniforms) -> np.ndarray:
    """``sample``'s arguments: a non-empty 1-D ``int64`` NumPy prompt, a ``length >= 0``, a temperature
    ``>= 0`` and ``length`` uniform draws in ``[0, 1)``; returns the draws as float64 ``(length,)``."""
    if not isinstance(prompt_ids, np.ndarray):
        raise TypeError(f"sample: prompt_ids must be a NumPy int64 array (the same input for every tree), "
                        f"got {type(prompt_ids).__name__}")
    check_input("sample", "prompt_ids", prompt_ids.shape, prompt_ids.dtype, expected_dtype="int64", ndim=1)
    if prompt_ids.size == 0:
        raise ValueError("sample: prompt_ids must hold at least one id (the model continues a text)")
    check_int("sample", "length", length, 0)
    check_range("sample", "temperature", temperature, 0.0)
    uniforms = np.asarray(uniforms)
    check_input("sample", "uniforms", uniforms.shape, uniforms.dtype, shape_like=(length,))
    if not np.issubdtype(uniforms.dtype, np.floating) or not ((uniforms >= 0.0) & (uniforms < 1.0)).all():
        raise ValueError(f"sample: uniforms must be {length} floats in [0, 1), one per generated character")
    return uniforms.astype(np.float64)


def choose_next(logits: np.ndarray, temperature: float, uniform: float) -> int:
    r"""The next id from one row of logits ``(V,)``: the first maximum at temperature 0 (greedy), else the
    inverse CDF of :math:`\operatorname{softmax}(z/\tau)` at ``uniform``, computed in float64."""
    logits = np.asarray(logits, dtype=np.float64)  # (V,)
    if temperature == 0.0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature  # (V,) <= 0: exp cannot overflow
    cdf = np.cumsum(np.exp(scaled))  # (V,) unnormalized
    # u * total instead of dividing every entry; side="right": the first k whose cdf exceeds u.
    choice = int(np.searchsorted(cdf, uniform * cdf[-1], side="right"))
    # Rounding could leave u * total == total; the last class is then the one meant.
    return min(choice, len(cdf) - 1)
