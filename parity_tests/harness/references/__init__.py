"""Reference runners, per curriculum phase: outside implementations (``torch.nn``, Keras,
torchvision, Hugging Face, …) fed the case's canonical weights and run like a fourth tree.

A runner is ``run(state, inputs, cotangents, dtype) -> Result``; the makers here return one.
"""
from .foundations import (keras_dense_reference, tf_functional_reference, torch_functional_reference, torch_linear_reference,
                          torch_module_reference)
from .generative import (KERAS_GATE_ORDER, keras_gru_to_torch, keras_lstm_weights, keras_recurrent_reference,
                         keras_simple_rnn_weights, lstm_with_state, recurrent_parameter_names, swap_gate_blocks,
                         torch_gru_to_keras, torch_packed_reference)

__all__ = ["keras_dense_reference", "tf_functional_reference", "torch_functional_reference", "torch_linear_reference",
           "torch_module_reference",
           "KERAS_GATE_ORDER", "keras_gru_to_torch", "keras_lstm_weights", "keras_recurrent_reference",
           "keras_simple_rnn_weights", "lstm_with_state", "recurrent_parameter_names", "swap_gate_blocks",
           "torch_gru_to_keras", "torch_packed_reference"]
