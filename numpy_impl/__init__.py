"""NumPy tree: every layer has ``forward`` (caching what backward needs) and a hand-written
``backward(grad_out) -> grad_in`` that fills ``self.grads`` under the keys of ``self.params``."""
