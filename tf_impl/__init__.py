"""TensorFlow tree: ``tf.Module``s written from each day's math; ``tf.GradientTape`` gives the
gradients. Variables live in TF's native layouts (dense kernels ``(in, out)``, channels-last) and
convert to the canonical PyTorch layouts only at the edge."""
import os

# Quiet TF's C++ start-up logging; it must be set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
