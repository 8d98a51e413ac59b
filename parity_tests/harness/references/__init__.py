"""Reference runners, per curriculum phase: outside implementations (``torch.nn``, Keras,
torchvision, Hugging Face, …) fed the case's canonical weights and run like a fourth tree.

A runner is ``run(state, inputs, cotangents, dtype) -> Result``; the makers here return one.
"""
from .foundations import (keras_dense_reference, tf_functional_reference, torch_functional_reference, torch_linear_reference,
                          torch_module_reference)

__all__ = ["keras_dense_reference", "tf_functional_reference", "torch_functional_reference", "torch_linear_reference",
           "torch_module_reference"]
