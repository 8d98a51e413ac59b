"""ml100: the framework-neutral core shared by the three mirrored trees.

It holds only what does not depend on a framework: the canonical weights file
(:mod:`ml100.weights`), input and dtype checks (:mod:`ml100.checks`), backend selection and quiet
framework loading (:mod:`ml100.backends`), the bundled digits data (:mod:`ml100.data`), the
curriculum table (:mod:`ml100.curriculum`), the command line (:mod:`ml100.cli`) and the argument
checks the examples and benchmarks share (:mod:`ml100.cli_args`).
"""

__version__ = "0.1.0"
