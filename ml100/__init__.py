"""ml100: the framework-neutral core shared by the three mirrored trees.

It holds only what does not depend on a framework: the canonical weights file
(:mod:`ml100.weights`), input, dtype and constructor-argument checks (:mod:`ml100.checks`), the
geometry of convolution and pooling (:mod:`ml100.geometry`), model configs (:mod:`ml100.configs`),
backend selection and quiet framework loading (:mod:`ml100.backends`), the bundled digits data
(:mod:`ml100.data`), augmentation draws (:mod:`ml100.augment`), the curriculum table
(:mod:`ml100.curriculum`), the command line (:mod:`ml100.cli`) and the argument checks the
examples and benchmarks share (:mod:`ml100.cli_args`).
"""

__version__ = "0.1.0"
