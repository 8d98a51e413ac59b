"""Clear errors for bad input and bad constructor arguments, shared by the three trees.

Every tree calls these with plain shapes and dtype names, so a wrong input gets the same
message whichever backend runs: what was expected, what arrived. Nothing is broadcast or
cast behind the caller's back.

Constructor arguments follow PyTorch where PyTorch is well defined (``Linear(0, 5)`` is a valid
layer whose output is its bias); what PyTorch refuses, or accepts and then turns into garbage (a
negative ``eps`` gives NaN, a ``momentum`` of ``None`` on a layer without that special value fails
later with a ``NoneType`` error), is refused here, at construction, with one message per rule.

One module per part of the curriculum (:mod:`.core` for what every day uses); every check is
importable from here, as ``from ml100.checks import check_input``.
"""
from __future__ import annotations

from .core import (ARRAY_TYPES, FLOAT_DTYPES, check_array_type, check_attention_inputs, check_bool, check_choice,
                   check_class_targets, check_divisible, check_fraction, check_index, check_input, check_int,
                   check_labels, check_normalized_shape, check_positive, check_range, check_real, check_real_type,
                   check_rng, check_trailing_shape, check_unsupported, check_weight_array, dtype_name, is_int, pair,
                   resolve_dtype)
from .sequences import (LSTM_PROJ_SIZE_REASON, RNN_DROPOUT_REASON, check_finite_norm, check_gradient_dict, check_ids,
                        check_inf_norm_sizes, check_lengths, check_nonnegative, check_norm_type, check_padding_idx,
                        check_seq2seq_inputs, check_sequence_length, nonfinite_norm_message)
from .diffusion import (check_class_labels, check_noising_inputs, check_step_inputs, check_timestep,
                        check_timestep_embedding)
from .attention import (DECODER_ATTENTION_SITES, DECODER_DROPOUT_SITES, ENCODER_DROPOUT_MASKS, LM_IGNORE_INDEX,
                        check_alibi_mask, check_bert_inputs, check_classifier_inputs, check_decoder_inputs,
                        check_distributions, check_encoder_dropout_masks, check_generate_inputs,
                        check_gpt_dropout_masks, check_gpt_inputs, check_gqa_inputs, check_gqa_module,
                        check_kv_cache_update, check_layer_stack, check_linear_attention_inputs, check_llama_inputs,
                        check_lm_label_values,
                        check_lora_args, check_lora_base, check_lora_dropout_mask, check_lora_merge_state,
                        check_lora_targets, check_multihead_inputs, check_position_window, check_positions,
                        check_pretraining_labels, check_rotary_embedding_args, check_rotary_inputs, check_router_logits,
                        check_scores, check_sdpa_inputs, check_sliding_window, check_top_k, check_transformer_inputs,
                        check_uniforms, split_transformer_dropout_masks, stack_dropout_masks)
from .vision import (BOX_FORMATS, BOX_LOSS_REDUCTIONS, box_dtype, check_box_pairs, check_boxes, check_mixer_pixels,
                     check_nms_inputs, check_vit_pixels, check_yolo_targets)

__all__ = [
    "ARRAY_TYPES", "BOX_FORMATS", "BOX_LOSS_REDUCTIONS", "DECODER_ATTENTION_SITES", "DECODER_DROPOUT_SITES",
    "ENCODER_DROPOUT_MASKS", "FLOAT_DTYPES", "LM_IGNORE_INDEX", "LSTM_PROJ_SIZE_REASON", "RNN_DROPOUT_REASON",
    "annotations", "box_dtype", "check_alibi_mask", "check_array_type", "check_attention_inputs",
    "check_bert_inputs", "check_bool", "check_box_pairs", "check_boxes", "check_choice", "check_class_labels",
    "check_class_targets", "check_classifier_inputs", "check_decoder_inputs", "check_distributions",
    "check_divisible", "check_encoder_dropout_masks", "check_finite_norm", "check_fraction",
    "check_generate_inputs", "check_gpt_dropout_masks", "check_gpt_inputs", "check_gqa_inputs", "check_gqa_module",
    "check_gradient_dict", "check_ids", "check_index", "check_inf_norm_sizes", "check_input", "check_int",
    "check_kv_cache_update", "check_labels", "check_layer_stack", "check_lengths", "check_linear_attention_inputs",
    "check_llama_inputs", "check_lm_label_values", "check_lora_args", "check_lora_base", "check_lora_dropout_mask", "check_lora_merge_state",
    "check_lora_targets", "check_mixer_pixels", "check_multihead_inputs", "check_nms_inputs",
    "check_noising_inputs", "check_nonnegative", "check_norm_type", "check_normalized_shape", "check_padding_idx",
    "check_position_window", "check_positions", "check_positive", "check_pretraining_labels", "check_range",
    "check_real", "check_real_type", "check_rng", "check_rotary_embedding_args", "check_rotary_inputs", "check_router_logits",
    "check_scores", "check_sdpa_inputs", "check_seq2seq_inputs", "check_sequence_length", "check_sliding_window",
    "check_step_inputs", "check_timestep", "check_timestep_embedding", "check_top_k", "check_trailing_shape",
    "check_transformer_inputs", "check_uniforms", "check_unsupported", "check_vit_pixels", "check_weight_array",
    "check_yolo_targets", "dtype_name", "is_int", "nonfinite_norm_message", "pair", "resolve_dtype",
    "split_transformer_dropout_masks", "stack_dropout_masks",
]
