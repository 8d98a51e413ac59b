"""Day 48: byte-level BPE (``ml100.bpe``, written once: no tensors) against Hugging Face.

Forward-only and integer: merges, vocabulary ids and encodings are compared exactly with
``tokenizers`` (``models.BPE`` + ``pre_tokenizers.ByteLevel(add_prefix_space=False)`` +
``trainers.BpeTrainer``) trained on the same corpus, and with ``transformers.GPT2TokenizerFast``
loaded from the files ``BPE.save`` writes. Round trips are fuzzed over arbitrary text and bytes.
"""
import json
import re
import sys
import unicodedata

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2TokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode as transformers_bytes_to_unicode

from ml100.bpe import (BPE, END_OF_TEXT, MERGES_HEADER, WHITESPACE, bytes_to_unicode, character_classes, initial_tokens,
                       pretokenize)
from ml100.text import stdlib_corpus
from parity_tests.harness import assert_raises_exactly

#: GPT-2's pattern in the ``regex`` module's syntax, as OpenAI's ``encoder.py`` writes it.
GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
#: Non-ASCII lines repeated into the training text, so that merges also join multi-byte characters.
MULTILINGUAL = ("Der Bär läuft über die Brücke. ", "東京都の天気は晴れです。", "Ça va très bien, merci ! ",
                "😀😀 👍🏽 🎉 ", "Привет, как дела? ", "ηλιος και θαλασσα ")
#: Held-out texts: emoji (with a skin-tone modifier), CJK, combining marks, CRLF, whitespace runs,
#: digits, contractions, special tokens, an empty string.
HELD_OUT = (
    "Hello wörld!! it's they'll I'M we've",
    "你好，世界。東京は今日も雨です",
    "😀👍🏽 🇫🇷 family: 👨‍👩‍👧",
    "e\u0301 cafe\u0301 n\u0303o a\u0308\u0304",
    "line one\r\nline two\r\n\r\n\tindented\n",
    "x" + " " * 300 + "y   \t\t  \n\n\n   ",
    "12345 3.14159 1,000,000 ٣٤٥ ⅷ 0x1F",
    f"first document{END_OF_TEXT}second{END_OF_TEXT}{END_OF_TEXT} third",
    "",
    " leading space and trailing space ",
)


def hf_tokenizer(pieces, vocab_size: int, special_tokens=(END_OF_TEXT,)) -> Tokenizer:
    """``tokenizers``' byte-level BPE (GPT-2's pre-tokenizer and decoder) trained on ``pieces``, one sequence each."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=list(special_tokens), show_progress=False)
    tokenizer.train_from_iterator(pieces, trainer)
    return tokenizer


def bpe_from_tokenizers(tokenizer: Tokenizer, special_tokens=(END_OF_TEXT,)) -> BPE:
    """The conversion ``tokenizers`` -> ours: its model's ``vocab`` and ``merges`` (rank order), as saved."""
    model = json.loads(tokenizer.to_str())["model"]
    return BPE(model["vocab"], [tuple(merge) for merge in model["merges"]], special_tokens)


def hf_pieces(text: str, special_tokens=(END_OF_TEXT,)) -> list[str]:
    """The text between special tokens, one sequence each: ``BpeTrainer`` would count a special
    token inside a sequence as text (``test_hf_trainer_would_learn_merges_inside_special_tokens``)."""
    if not special_tokens:
        return [text]
    return [piece for piece in re.split("|".join(map(re.escape, special_tokens)), text) if piece]


@pytest.fixture(scope="module")
def corpus() -> str:
    """40 kB of the stdlib docstrings, the non-ASCII lines and end-of-text markers between parts."""
    text = stdlib_corpus()[:40_000]
    return END_OF_TEXT.join([text[:20_000], "".join(line * 8 for line in MULTILINGUAL), text[20_000:]])


@pytest.fixture(scope="module")
def trained(corpus):
    """Ours and Hugging Face's, trained on the same corpus to 700 tokens."""
    return BPE.train(corpus, 700), hf_tokenizer(hf_pieces(corpus), 700)


def test_bytes_to_unicode_is_gpt2s_map_and_the_byte_level_alphabet():
    mapping = bytes_to_unicode()
    assert mapping == transformers_bytes_to_unicode()
    assert set(mapping.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert len(set(mapping.values())) == 256
    assert mapping[ord(" ")] == "Ġ" and mapping[ord("\n")] == "Ċ" and mapping[ord("a")] == "a"


def test_pattern_classes_equal_the_regex_modules_on_every_assigned_code_point():
    """The ``re`` spelling is GPT-2's ``regex`` pattern: the same alternatives, and each class
    (``\\p{L}``, ``\\p{N}``, ``\\s``) holds the same characters among all that Python's Unicode
    database assigns (code points assigned by a later Unicode version are "other" here)."""
    assigned = "".join(chr(point) for point in range(sys.maxunicode + 1)
                       if unicodedata.category(chr(point)) not in ("Cn", "Cs"))
    letter, number = character_classes()
    for ours, theirs in ((f"[^{letter}]", r"[^\p{L}]"), (f"[^{number}]", r"[^\p{N}]"), (f"[^{WHITESPACE}]", r"[^\s]")):
        assert re.sub(ours, "", assigned) == regex.sub(theirs, "", assigned), theirs
    # Python's re \s would also take the separators U+001C..U+001F: GPT-2 and tokenizers treat them as "other".
    assert pretokenize("a\x1cb c") == GPT2_PATTERN.findall("a\x1cb c") == ["a", "\x1c", "b", " c"]


def byte_level(words: list[str]) -> list[str]:
    """Words as the byte-level pre-tokenizer reports them: each byte as its printable character."""
    return ["".join(bytes_to_unicode()[byte] for byte in word.encode("utf-8")) for word in words]


@pytest.mark.parametrize("text", HELD_OUT + MULTILINGUAL)
def test_pretokenize_matches_gpt2_and_hf_byte_level(text):
    words = pretokenize(text)
    assert "".join(words) == text
    assert words == GPT2_PATTERN.findall(text)
    reference = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)
    assert byte_level(words) == [word for word, _ in reference]


def test_merges_vocab_and_ids_match_hf_trainer(trained):
    ours, reference = trained
    converted = bpe_from_tokenizers(reference)
    assert ours.merges == converted.merges
    assert ours.vocab == converted.vocab
    assert ours.vocab_size == reference.get_vocab_size() == 700
    # Ids: the special token, the bytes by code point ("!" first), then the merges in order.
    assert ours.vocab[END_OF_TEXT] == 0 and ours.vocab["!"] == 1 and ours.vocab["Ġ"] > ours.vocab["ÿ"]
    assert ours.vocab["".join(ours.merges[0])] == 257
    assert any(not token.isascii() for token in ours.id_to_token[257:]), "no merge joined multi-byte characters"


@pytest.mark.parametrize("vocab_size, special_tokens", [(257, ()), (300, (END_OF_TEXT,)), (1200, ("<pad>", END_OF_TEXT))])
def test_vocab_sizes_and_special_tokens_match_hf_trainer(corpus, vocab_size, special_tokens):
    ours = BPE.train(corpus[:15_000], vocab_size, special_tokens)
    reference = bpe_from_tokenizers(hf_tokenizer(hf_pieces(corpus[:15_000], special_tokens), vocab_size, special_tokens),
                                    special_tokens)
    assert (ours.merges, ours.vocab) == (reference.merges, reference.vocab)
    assert ours.vocab_size == vocab_size


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet="ab \n'sé😀", min_size=1, max_size=80), extra=st.integers(0, 40))
def test_training_fuzz_matches_hf_trainer(text, extra):
    """Tiny alphabets tie counts all the time: the tie rule, overlapping pairs (``aaa``) and early
    stops (every word one token) are all exercised."""
    if not pretokenize(text):
        return
    ours = BPE.train(text, 256 + extra, ())
    reference = bpe_from_tokenizers(hf_tokenizer([text], 256 + extra, ()), ())
    assert (ours.merges, ours.vocab) == (reference.merges, reference.vocab)


@pytest.mark.parametrize("text, merges", [
    # (z, z) and (Ġ, a) both count 1: "z" (U+007A) has a smaller id than "Ġ" (U+0120), though
    # the space byte (0x20) is smaller than "z" (0x7A): ties follow ids, not bytes.
    ("zz a", [("z", "z"), ("Ġ", "a")]),
    # Three pairs of count 1: (b, a) < (b, c) < (Ġ, b) by (left id, right id); merging (b, c)
    # turns (Ġ, b) into (Ġ, bc).
    ("ba bc", [("b", "a"), ("b", "c"), ("Ġ", "bc")]),
    # Overlapping pairs count twice: (a, a) has 2 in "aaa" and wins over (a, b); the merge is
    # left to right, "aa a b", then (aa, a) before (a, b) by id.
    ("aaab", [("a", "a"), ("a", "b"), ("aa", "ab")]),
])
def test_ties_break_by_smallest_pair_of_ids_as_hf(text, merges):
    ours = BPE.train(text, 300, ())
    reference = bpe_from_tokenizers(hf_tokenizer([text], 300, ()), ())
    assert ours.merges == reference.merges == merges


@pytest.mark.parametrize("text", HELD_OUT)
def test_encodings_match_hf_and_gpt2_tokenizer_fast(trained, tmp_path, text):
    ours, reference = trained
    ids = ours.encode(text)
    assert ids == reference.encode(text).ids
    loaded = GPT2TokenizerFast.from_pretrained(str(ours.save(tmp_path)))
    assert ids == loaded.encode(text)
    assert ours.decode(ids) == text == loaded.decode(ids)


def test_special_tokens_are_kept_whole_and_never_learned(trained):
    ours, _ = trained
    assert ours.encode(f"a{END_OF_TEXT}b") == [ours.vocab["a"], 0, ours.vocab["b"]]
    assert not [merge for merge in ours.merges if "|" in "".join(merge) and "<" in "".join(merge)]


def test_hf_trainer_would_learn_merges_inside_special_tokens():
    """The documented difference: ``BpeTrainer`` counts a special token met inside a training
    sequence as text; ours never does (``hf_pieces`` cuts the text for it)."""
    text = f"ab{END_OF_TEXT}ab{END_OF_TEXT}ab"
    assert ("<", "|") in bpe_from_tokenizers(hf_tokenizer([text], 300)).merges
    assert BPE.train(text, 300).merges == bpe_from_tokenizers(hf_tokenizer(hf_pieces(text), 300)).merges == [("a", "b")]


def test_a_cut_character_decodes_to_the_replacement_character(trained):
    ours, reference = trained
    ids = ours.encode("ж")  # one Cyrillic letter, two bytes; the corpus never merged them alone
    assert len(ids) == 2
    assert ours.decode(ids[:1]) == "\ufffd" == reference.decode(ids[:1])
    assert ours.decode_bytes(ids[:1]) == "ж".encode()[:1]


def test_long_whitespace_run_encodes_fast_and_as_hf(trained):
    ours, reference = trained
    text = "a" + " " * 20_000 + "\n" * 5_000 + "b"
    assert ours.encode(text) == reference.encode(text).ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(exclude_categories=("Cs", "Cn")), max_size=60))
def test_round_trip_and_hf_parity_on_any_text(trained, text):
    ours, reference = trained
    ids = ours.encode(text)
    assert ours.decode(ids) == text
    assert ids == reference.encode(text).ids


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=60))
def test_round_trip_on_any_bytes(trained, data):
    ours, _ = trained
    ids = ours.encode_bytes(data)
    assert ours.decode_bytes(ids) == data
    assert ours.decode(ids) == data.decode("utf-8", errors="replace")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert ids == ours.encode(text)


def test_save_writes_gpt2_files_and_load_restores(trained, tmp_path):
    ours, _ = trained
    ours.save(tmp_path)
    lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == MERGES_HEADER and lines[1] == " ".join(ours.merges[0]) and len(lines) == len(ours.merges) + 1
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == ours.vocab
    loaded = BPE.load(tmp_path)
    assert (loaded.vocab, loaded.merges, loaded.special_tokens) == (ours.vocab, ours.merges, ours.special_tokens)


def test_bad_arguments_raise_one_clear_error(trained):
    ours, _ = trained
    assert_raises_exactly(ValueError, "BPE.train: vocab_size must be an int >= 257, got 256", lambda: BPE.train("ab", 256))
    assert_raises_exactly(ValueError, "BPE.train: vocab_size must be an int >= 258, got 257",
                          lambda: BPE.train("ab", 257, ("<a>", "<b>")))
    assert_raises_exactly(ValueError, "BPE.train: vocab_size must be an int >= 257, got 300.0", lambda: BPE.train("ab", 300.0))
    assert_raises_exactly(ValueError, "BPE.train: the corpus is empty (no text outside the special tokens)",
                          lambda: BPE.train("", 300))
    assert_raises_exactly(ValueError, "BPE.train: the corpus is empty (no text outside the special tokens)",
                          lambda: BPE.train(END_OF_TEXT * 3, 300))
    assert_raises_exactly(TypeError, "BPE.train: text must be a str, got bytes", lambda: BPE.train(b"ab", 300))
    assert_raises_exactly(ValueError, "BPE.train: special_tokens must be distinct, got ('<a>', '<a>')",
                          lambda: BPE.train("ab", 300, ("<a>", "<a>")))
    assert_raises_exactly(TypeError, "BPE.train: special_tokens must be a tuple of non-empty strings, got ('',)",
                          lambda: BPE.train("ab", 300, ("",)))
    assert_raises_exactly(ValueError, "BPE.train: special token 'Ġ' is a byte's own character; choose a longer string",
                          lambda: BPE.train("ab", 300, ("Ġ",)))
    assert_raises_exactly(ValueError, "BPE.encode: text must be valid Unicode; a lone surrogate '\\ud800' at index 1 "
                          "has no UTF-8 bytes (use encode_bytes for raw bytes)", lambda: ours.encode("a\ud800"))
    assert_raises_exactly(TypeError, "BPE.encode_bytes: data must be bytes, got str", lambda: ours.encode_bytes("ab"))
    assert_raises_exactly(ValueError, "BPE.decode: id 700 is not in the vocabulary (ids 0..699)", lambda: ours.decode([1, 700]))
    assert_raises_exactly(ValueError, "BPE.decode: every id must be an int >= 0, got -1", lambda: ours.decode([-1]))
    bytes_only = {token: i for i, token in enumerate(initial_tokens(()))}
    assert_raises_exactly(ValueError, "BPE: vocab lacks 'ab' (every byte, special token, merge part and result needs an id)",
                          lambda: BPE(bytes_only, [("a", "b")], ()))
    assert_raises_exactly(ValueError, "BPE: vocab ids must be 0..1, each once", lambda: BPE({"a": 0, "b": 5}, [], ()))
