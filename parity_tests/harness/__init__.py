"""The parity harness, a small package; everything a test needs is importable from here.

- :mod:`.compare` — tolerances by dtype, tensor/result comparison, exact for integers;
- :mod:`.runners` — one forward and backward per framework (``run_numpy``, ``run_torch``,
  ``run_tf``, ``tf_layout_call``), as a :class:`Result`;
- :mod:`.case` and :mod:`.protocol` — ``Case``, shared weights, ``check_parity``,
  ``gradcheck_numpy``;
- :mod:`.trajectory` — N-step processes compared after every step (``check_trajectory``);
- :mod:`.layouts` — NCHW <-> NHWC and each tree's tensor type, once;
- :mod:`.special` — the special-values pass and the empty batch, run by ``check_parity``;
- :mod:`.references` — reference runners per phase (``references.foundations``,
  ``references.generative``: the recurrent layers' torch/Keras references and weight conversions).
"""
from .case import (TREES, Case, WithoutParameters, build_model, build_models, random_weights, run_all_trees, run_one_tree,
                   run_reference, share_weights)
from .compare import (TOLERANCES, assert_no_failures, assert_raises_exactly, compare_exact, compare_results, compare_special, compare_tensors,
                      is_float, max_errors)
from .layouts import (NCHW_TO_NHWC, NHWC_TO_NCHW, channels_first, channels_last, nchw_to_nhwc, nhwc_to_nchw, to_canonical,
                      to_native, to_tree)
from .protocol import FD_STEP, FD_TOLERANCE, check_parity, gradcheck_numpy
from .references import (keras_dense_reference, tf_functional_reference, torch_functional_reference, torch_linear_reference,
                         torch_module_reference)
from .references import (KERAS_GATE_ORDER, keras_gru_to_torch, keras_lstm_weights, keras_recurrent_reference,
                         keras_simple_rnn_weights, lstm_with_state, recurrent_parameter_names, swap_gate_blocks,
                         torch_gru_to_keras, torch_packed_reference)
from .runners import Result, flatten, run_numpy, run_tf, run_torch, run_tree, scalar_and_input_grad, tf_layout_call
from .special import SPECIAL_PASSES, SpecialPass, check_special_values
from .trajectory import Trajectory, check_trajectory, gradient_descent_curves

__all__ = [
    "TREES", "Case", "WithoutParameters", "build_model", "build_models", "random_weights", "run_all_trees", "run_one_tree", "run_reference",
    "share_weights",
    "TOLERANCES", "assert_no_failures", "assert_raises_exactly", "compare_exact", "compare_results", "compare_special", "compare_tensors", "is_float",
    "max_errors",
    "NCHW_TO_NHWC", "NHWC_TO_NCHW", "channels_first", "channels_last", "nchw_to_nhwc", "nhwc_to_nchw", "to_canonical",
    "to_native", "to_tree",
    "FD_STEP", "FD_TOLERANCE", "check_parity", "gradcheck_numpy",
    "keras_dense_reference", "tf_functional_reference", "torch_functional_reference", "torch_linear_reference",
    "torch_module_reference",
    "KERAS_GATE_ORDER", "keras_gru_to_torch", "keras_lstm_weights", "keras_recurrent_reference", "keras_simple_rnn_weights",
    "lstm_with_state", "recurrent_parameter_names", "swap_gate_blocks", "torch_gru_to_keras", "torch_packed_reference",
    "Result", "flatten", "run_numpy", "run_tf", "run_torch", "run_tree", "scalar_and_input_grad", "tf_layout_call",
    "SPECIAL_PASSES", "SpecialPass", "check_special_values",
    "Trajectory", "check_trajectory", "gradient_descent_curves",
]
