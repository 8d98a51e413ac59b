r"""Day 48: GPT-2's byte-level byte-pair encoding (BPE), trained from scratch.

Framework-neutral (counting and dictionary bookkeeping over bytes: no tensors, no gradients), so it
lives once, here, and every tree and example uses it.

**Bytes as printable characters.** A text is its UTF-8 bytes. Each of the 256 byte values gets one
printable character (:func:`bytes_to_unicode`, GPT-2's map): the printable bytes ``!``..``~``,
``¡``..``¬``, ``®``..``ÿ`` stand for themselves, the other 68 (controls, space, ``\xad``) for
``chr(256 + k)`` in byte order, so a space is ``Ġ`` and a newline ``Ċ``. Every token is then a
string of these characters, which is what GPT-2's ``vocab.json`` and ``merges.txt`` hold.

**Pre-tokenization.** A text is first cut into *words* by GPT-2's pattern (:data:`PATTERN`):
contractions ``'s 't 're 've 'm 'll 'd``, `` ?`` + letters, `` ?`` + numbers, `` ?`` + anything
else, whitespace not followed by a non-space, whitespace. No merge crosses a word boundary.

**Training.** With :math:`c(w)` the count of word :math:`w` and :math:`w` written as a sequence of
tokens, the count of an adjacent pair is

.. math:: n(a, b) = \sum_w c(w)\,\#\{i : w_i = a,\ w_{i+1} = b\}

(overlapping occurrences counted, as Hugging Face ``tokenizers`` counts them). Each step merges the
pair with the largest :math:`n` into a new token :math:`ab` in every word (left to right, without
overlap), until the vocabulary holds ``vocab_size`` tokens. Counts are updated from the words the
merge touched only (:func:`merge_in_word` reports each neighbour pair lost and gained), and a heap
finds the largest count, so a merge costs the size of what it changes, not a recount.

**Ties and ids: Hugging Face's rules, on purpose.** ``tokenizers``' ``BpeTrainer`` (Rust,
``models/bpe/trainer.rs``) orders its heap by count, then by the pair of token ids *ascending*:
among equal counts the pair with the smallest left id wins, then the smallest right id. Its ids
are the special tokens first (in the order given), then the 256 byte characters sorted by code
point (``!`` is the first: the id order is *not* the byte order), then each merge's result in
order. A merge whose result string already exists (``ab + c`` after ``a + bc``) reuses that id, so
the vocabulary can need more merges than ``vocab_size - 256 - len(special_tokens)``. The trainer
here keeps those rules and its bookkeeping (a merged pair's own count is left as it was; a heap
entry remembers the words it was counted in) so that the same corpus gives the same merges, in the
same order, with the same ids. When one pair sits twice in the heap with the same count (only
after such a repeated string) Hugging Face's choice depends on its heap layout; here the older
entry goes first.

**Special tokens** (``<|endoftext|>``) are never split: training counts only the text between
them, encoding emits their id whole.

**Decoding** joins the tokens' bytes and decodes UTF-8 with ``errors="replace"``, as GPT-2 does: a
token sequence cut inside a multi-byte character gives ``U+FFFD``; the bytes themselves
(:meth:`BPE.decode_bytes`) are always exact, and ``decode(encode(text)) == text`` for every text.
"""
from __future__ import annotations

import functools
import heapq
import itertools
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .checks import check_int

#: The number of byte values, each a token of its own before any merge.
BYTE_COUNT = 256
#: GPT-2's end-of-text token, the default special token.
END_OF_TEXT = "<|endoftext|>"
#: GPT-2's contractions, tried first and case-sensitive as in GPT-2.
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
#: Unicode's White_Space property (what ``\s`` means in the ``regex`` module and in Oniguruma, the
#: engine of ``tokenizers``); Python's ``re`` ``\s`` adds U+001C..U+001F, which GPT-2 does not.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: ``merges.txt``'s first line in GPT-2's files and in Hugging Face's.
MERGES_HEADER = "#version: 0.2"


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte value to one printable character: printable Latin-1 bytes keep
    their own character, the other 68 get ``chr(256 + k)``, ``k`` counting them in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(BYTE_COUNT) if byte not in printable]
    mapping = {byte: chr(byte) for byte in printable}
    mapping.update({byte: chr(BYTE_COUNT + k) for k, byte in enumerate(others)})
    return mapping


@functools.cache
def unicode_to_bytes() -> dict[str, int]:
    """The inverse of :func:`bytes_to_unicode`: each printable character back to its byte."""
    return {char: byte for byte, char in bytes_to_unicode().items()}


def ranges(mask: np.ndarray) -> str:
    """A ``re`` character-class body, ``a-z`` runs, of the code points where ``mask`` is true."""
    # +1 where a run starts, -1 one past where it ends.
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))  # (2R,)
    return "".join(f"{re.escape(chr(first))}-{re.escape(chr(last - 1))}" for first, last in edges.reshape(-1, 2))


@functools.cache
def character_classes() -> tuple[str, str]:
    r"""``\p{L}`` and ``\p{N}`` as ``re`` class bodies, from Python's Unicode database:
    ``str.isalpha`` is exactly the categories L*, and ``str.isnumeric`` without the letters is
    exactly N* (it adds letters with a numeric value, such as 一)."""
    points = "".join(map(chr, range(sys.maxunicode + 1)))
    letter = np.fromiter(map(str.isalpha, points), dtype=bool, count=len(points))  # (0x110000,)
    number = np.fromiter(map(str.isnumeric, points), dtype=bool, count=len(points)) & ~letter  # (0x110000,)
    return ranges(letter), ranges(number)


@functools.cache
def pattern() -> re.Pattern:
    r"""GPT-2's pre-tokenization pattern
    ``'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+``, written for the
    standard ``re`` module: ``\p{L}`` and ``\p{N}`` spelled out from Python's Unicode database
    (:func:`character_classes`, once per process, ~0.5 s), ``\s`` as Unicode's White_Space (:data:`WHITESPACE`)."""
    letter, number = character_classes()
    alternatives = [*CONTRACTIONS, f" ?[{letter}]+", f" ?[{number}]+", f" ?[^{WHITESPACE}{letter}{number}]+",
                    # Whitespace before a word leaves its last space to that word (" ?" above).
                    f"[{WHITESPACE}]+(?![^{WHITESPACE}])", f"[{WHITESPACE}]+"]
    return re.compile("|".join(alternatives))


def pretokenize(text: str) -> list[str]:
    """The words GPT-2's pattern cuts ``text`` into; they concatenate back to ``text``."""
    return pattern().findall(text)


def check_special_tokens(owner: str, special_tokens) -> tuple[str, ...]:
    """A tuple or list of distinct non-empty strings, none of them a single byte character (that
    string is already a byte's token); returned as a tuple."""
    if not isinstance(special_tokens, (tuple, list)) or not all(isinstance(token, str) and token for token in special_tokens):
        raise TypeError(f"{owner}: special_tokens must be a tuple of non-empty strings, got {special_tokens!r}")
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"{owner}: special_tokens must be distinct, got {special_tokens!r}")
    clashes = [token for token in special_tokens if token in unicode_to_bytes()]
    if clashes:
        raise ValueError(f"{owner}: special token {clashes[0]!r} is a byte's own character; choose a longer string")
    return tuple(special_tokens)


def check_text(owner: str, text) -> str:
    """A ``str`` that UTF-8 can encode: a lone surrogate (``"\\ud800"``) has no bytes."""
    if not isinstance(text, str):
        raise TypeError(f"{owner}: text must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{owner}: text must be valid Unicode; a lone surrogate {text[error.start]!r} at index "
                         f"{error.start} has no UTF-8 bytes (use encode_bytes for raw bytes)") from None
    return text


def split_special(text: str, special_tokens: tuple[str, ...]) -> list[str]:
    """``text`` cut around every occurrence of a special token, the tokens kept as pieces of their
    own (the longest first where two start at one place); empty pieces dropped."""
    if not special_tokens:
        return [text] if text else []
    alternatives = "|".join(re.escape(token) for token in sorted(special_tokens, key=len, reverse=True))
    return [piece for piece in re.split(f"({alternatives})", text) if piece]


def merge_in_word(symbols: list[int], left: int, right: int, merged: int) -> list[tuple[tuple[int, int], int]]:
    """Replace each ``left, right`` in ``symbols`` (in place, left to right, without overlap) by
    ``merged``; return the neighbour pairs lost (-1) and gained (+1), one entry per occurrence, as
    ``tokenizers``' ``Word::merge`` reports them (the merged pair itself is not in the list)."""
    changes = []
    i = 0
    while i < len(symbols) - 1:
        if symbols[i] == left and symbols[i + 1] == right:
            if i > 0:
                changes += [((symbols[i - 1], left), -1), ((symbols[i - 1], merged), 1)]
            symbols[i:i + 2] = [merged]
            if i < len(symbols) - 1:
                changes += [((right, symbols[i + 1]), -1), ((merged, symbols[i + 1]), 1)]
        i += 1
    return changes


def count_words(text: str, special_tokens: tuple[str, ...]) -> Counter:
    """How often each pre-tokenized word (as UTF-8 bytes) occurs in the text between the special tokens."""
    words = Counter()
    for piece in split_special(text, special_tokens):
        if piece not in special_tokens:
            words.update(pretokenize(piece))
    return Counter({word.encode("utf-8"): count for word, count in words.items()})


def initial_tokens(special_tokens: tuple[str, ...]) -> list[str]:
    """Hugging Face's first ids: the special tokens, then the 256 byte characters by code point."""
    return [*special_tokens, *sorted(bytes_to_unicode().values())]


def learn_merges(word_counts: Counter, tokens: list[str], vocab_size: int) -> list[tuple[str, str]]:
    """The merges, in order, that grow ``tokens`` (extended in place) to ``vocab_size`` tokens or
    until no pair is left; a merge may repeat (see the module docstring)."""
    ids = {token: i for i, token in enumerate(tokens)}
    byte_ids = [ids[bytes_to_unicode()[byte]] for byte in range(BYTE_COUNT)]
    words = [[byte_ids[byte] for byte in word] for word in word_counts]
    counts = list(word_counts.values())
    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for index, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += counts[index]
            where[pair].add(index)
    # Entry [-count, left, right, age, words]: a min-heap pops the largest count, then the smallest
    # (left, right) ids - tokenizers' order - then the oldest entry; the word set is never compared.
    age = itertools.count()
    heap = [[-pair_counts[pair], *pair, next(age), positions] for pair, positions in where.items()]
    heapq.heapify(heap)
    merges = []
    while len(tokens) < vocab_size and heap:
        entry = heapq.heappop(heap)
        pair = (entry[1], entry[2])
        if -entry[0] != pair_counts[pair]:
            # A stale count (the pair lost occurrences since): requeue it with the current one.
            heapq.heappush(heap, [-pair_counts[pair], *pair, next(age), entry[4]])
            continue
        if pair_counts[pair] < 1:
            break
        token = tokens[pair[0]] + tokens[pair[1]]
        if token not in ids:
            ids[token] = len(tokens)
            tokens.append(token)
        merges.append((tokens[pair[0]], tokens[pair[1]]))
        gained: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
        for index in entry[4]:
            for neighbour, change in merge_in_word(words[index], *pair, ids[token]):
                pair_counts[neighbour] += change * counts[index]
                if change > 0:
                    gained[neighbour].add(index)
        for neighbour, positions in gained.items():
            if pair_counts[neighbour] > 0:
                heapq.heappush(heap, [-pair_counts[neighbour], *neighbour, next(age), positions])
    return merges


def ranked(merges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each distinct merge once, at the place of its *last* occurrence: the rank ``tokenizers``
    keeps (its merge table is a map, a repeated pair overwrites the earlier rank)."""
    last = {merge: rank for rank, merge in enumerate(merges)}
    return sorted(last, key=last.get)


class BPE:
    r"""A byte-level BPE tokenizer: ``vocab`` (token string -> id, ids ``0..V-1``), ``merges``
    (pairs of token strings, rank order) and the ``special_tokens`` found whole in any text.

    ``BPE.train(text, vocab_size)`` learns one; ``encode``/``decode`` (and ``encode_bytes``/
    ``decode_bytes`` for raw bytes); ``save(directory)``/``BPE.load(directory)`` use GPT-2's
    ``vocab.json`` + ``merges.txt``, which Hugging Face's ``GPT2TokenizerFast`` reads.

    Encoding a word applies the merge of lowest rank first, the leftmost of equal ranks, until no
    adjacent pair has a merge (Hugging Face's ``Word::merge_all``; GPT-2's ``bpe`` gives the same).
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], special_tokens=(END_OF_TEXT,)):
        owner = "BPE"
        self.special_tokens = check_special_tokens(owner, special_tokens)
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise ValueError(f"{owner}: vocab ids must be 0..{len(vocab) - 1}, each once")
        missing = [token for token in (*bytes_to_unicode().values(), *self.special_tokens) if token not in vocab]
        missing += [part for merge in merges for part in (*merge, "".join(merge)) if part not in vocab]
        if missing:
            raise ValueError(f"{owner}: vocab lacks {missing[0]!r} (every byte, special token, merge part and result needs an id)")
        self.vocab = dict(vocab)
        self.merges = [tuple(merge) for merge in merges]
        self.id_to_token = sorted(self.vocab, key=self.vocab.get)
        # Pair of ids -> (rank, id of the merged token): what encoding looks up.
        self.ranks = {(vocab[left], vocab[right]): (rank, vocab[left + right]) for rank, (left, right) in enumerate(self.merges)}
        self.byte_ids = [vocab[bytes_to_unicode()[byte]] for byte in range(BYTE_COUNT)]
        # Each id's bytes: a special token's UTF-8, else its characters mapped back to bytes.
        self.token_bytes = [token.encode("utf-8") if token in self.special_tokens
                            else bytes(unicode_to_bytes()[char] for char in token) for token in self.id_to_token]
        self.cache: dict[bytes, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens=(END_OF_TEXT,)) -> BPE:
        """Learn merges on ``text`` until ``vocab_size`` tokens (special tokens and the 256 bytes
        included), or fewer when every word is one token already."""
        owner = "BPE.train"
        text = check_text(owner, text)
        special_tokens = check_special_tokens(owner, special_tokens)
        check_int(owner, "vocab_size", vocab_size, BYTE_COUNT + len(special_tokens))
        word_counts = count_words(text, special_tokens)
        if not word_counts:
            raise ValueError(f"{owner}: the corpus is empty (no text outside the special tokens)")
        tokens = initial_tokens(special_tokens)
        merges = learn_merges(word_counts, tokens, vocab_size)
        return cls({token: i for i, token in enumerate(tokens)}, ranked(merges), special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode_word(self, word: bytes) -> list[int]:
        """The ids of one pre-tokenized word: lowest-rank merge first, leftmost among equals, with a
        heap over a linked list of symbols (a long run of spaces stays O(L log L))."""
        if word in self.cache:
            return self.cache[word]
        symbols = [self.byte_ids[byte] for byte in word]
        alive = [True] * len(symbols)
        after = list(range(1, len(symbols) + 1))  # next live symbol; len(symbols): none
        before = list(range(-1, len(symbols) - 1))  # previous live symbol; -1: none
        heap = [(*self.ranks[pair], i) for i, pair in enumerate(zip(symbols, symbols[1:])) if pair in self.ranks]
        heapq.heapify(heap)
        while heap:
            rank, merged, i = heapq.heappop(heap)
            j = after[i]
            # An entry is stale when its left symbol was absorbed or its pair changed since.
            if not alive[i] or j == len(symbols) or self.ranks.get((symbols[i], symbols[j]), (rank, None))[1] != merged:
                continue
            symbols[i], alive[j], after[i] = merged, False, after[j]
            if after[i] < len(symbols):
                before[after[i]] = i
            for left in (before[i], i):
                right = after[left] if left >= 0 else len(symbols)
                if left >= 0 and right < len(symbols) and (symbols[left], symbols[right]) in self.ranks:
                    heapq.heappush(heap, (*self.ranks[(symbols[left], symbols[right])], left))
        self.cache[word] = [symbol for symbol, live in zip(symbols, alive) if live]
        return self.cache[word]

    def encode_pieces(self, text: str) -> list[int]:
        """Ids of a text whose lone surrogates stand for raw bytes (``surrogateescape``)."""
        ids = []
        for piece in split_special(text, self.special_tokens):
            if piece in self.special_tokens:
                ids.append(self.vocab[piece])
                continue
            for word in pretokenize(piece):
                ids += self.encode_word(word.encode("utf-8", "surrogateescape"))
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens in it come out whole."""
        return self.encode_pieces(check_text("BPE.encode", text))

    def encode_bytes(self, data: bytes) -> list[int]:
        """Token ids of any bytes, valid UTF-8 or not; ``decode_bytes`` gives them back exactly.
        On valid UTF-8 this is ``encode(data.decode())``."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"BPE.encode_bytes: data must be bytes, got {type(data).__name__}")
        # surrogateescape turns each invalid byte into one lone surrogate, which the pattern treats
        # as "other" and encoding turns back into that byte.
        return self.encode_pieces(bytes(data).decode("utf-8", "surrogateescape"))

    def decode_bytes(self, ids) -> bytes:
        """The bytes of ``ids``: each token's bytes, a special token's UTF-8, joined."""
        ids = list(ids)
        for token_id in ids:
            check_int("BPE.decode", "every id", token_id, 0)
            if token_id >= self.vocab_size:
                raise ValueError(f"BPE.decode: id {token_id} is not in the vocabulary (ids 0..{self.vocab_size - 1})")
        return b"".join(self.token_bytes[token_id] for token_id in ids)

    def decode(self, ids) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 (a cut character) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def save(self, directory) -> Path:
        """Write ``vocab.json`` and ``merges.txt`` (GPT-2's format) into ``directory``; returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")
        lines = [MERGES_HEADER, *(f"{left} {right}" for left, right in self.merges)]
        (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory) -> BPE:
        """Read ``vocab.json`` and ``merges.txt``; the special tokens are the vocabulary's tokens
        that are neither a byte nor a merge's result (GPT-2's files do not mark them otherwise)."""
        directory = Path(directory)
        vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        lines = (directory / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
        bad = [merge for merge in merges if len(merge) != 2]
        if bad:
            raise ValueError(f"BPE.load: each merges.txt line must be two tokens separated by one space, got {' '.join(bad[0])!r}")
        made = {*bytes_to_unicode().values(), *("".join(merge) for merge in merges)}
        special_tokens = tuple(token for token in sorted(vocab, key=vocab.get) if token not in made)
        return cls(vocab, merges, special_tokens)
