"""Session set-up: import every framework once, quiet TF, fix thread counts before TF's first op."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# No GPU here: keep torch from probing CUDA (and warning) on every first backward.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# torch.optim (and torch.compile) lazily import torch._dynamo, which loads Triton's libtriton.so;
# loaded after TensorFlow's shared libraries it segfaults the process, so it must come first.
import torch._dynamo  # noqa: E402,F401
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

# Thread settings only take effect before TF runs its first op; the machine has 2 cores.
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
# One torch thread: parity shapes are tiny, and torch's OpenMP threads spin-wait, so with 2 threads
# on a busy 2-core machine one GPT forward+backward took 1.2 s against 0.014 s with 1 (day 49).
torch.set_num_threads(1)

import keras  # noqa: E402,F401  (imported once here, after TF is configured)

from hypothesis import settings  # noqa: E402

# Every run writes the largest error per test file, pair and dtype: the site's parity dashboard.
pytest_plugins = ["parity_tests.harness.dashboard"]

# CI replays one fixed set of fuzz examples, so a run is reproducible; locally they keep exploring.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
