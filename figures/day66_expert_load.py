"""Day 66: how the load-balancing loss spreads tokens over the experts.

The NumPy tree's ``MixtralTopKRouter`` (8 experts, top-2) routes 1024 random tokens whose mean is
not zero, so a random router sends most of them to a few experts. Left: the share of the top-2
choices each expert gets (``f_e / k``) before training and after 60 SGD steps on the router with
``LoadBalancingLoss`` alone (lr 2.0); the dashed line is the balanced share 1/8. Right: the loss
per step, whose balanced value is ``top_k`` = 2.

    python figures/day66_expert_load.py [--out DIR]   # writes DIR/day66_expert_load.png
"""
import numpy as np

from make_all import start_figure

TOKENS, HIDDEN, EXPERTS, TOP_K = 1024, 16, 8, 2
STEPS, LR = 60, 0.05


def expert_share(router, tokens: np.ndarray) -> np.ndarray:
    """The share of the top-k choices each expert receives, ``(X,)``, summing to 1."""
    from numpy_impl.module import no_grad

    with no_grad():
        _, _, indices = router(tokens)  # (N, k)
    return np.bincount(indices.ravel(), minlength=EXPERTS) / indices.size


def train(router, loss_fn, tokens: np.ndarray) -> list[float]:
    """``STEPS`` SGD steps on the router's weight with the load-balancing loss alone."""
    losses = []
    for _ in range(STEPS):
        router.zero_grad()
        logits, scores, _ = router(tokens)  # (N, X), (N, k)
        losses.append(float(loss_fn(logits)))
        grad_logits = loss_fn.backward(np.ones(()))  # (N, X)
        # The routing weights feed no loss here: their gradient is zero.
        router.backward(grad_logits, np.zeros_like(scores))
        router.params["weight"] -= LR * router.grads["weight"]
    return losses


def draw(path) -> None:
    import matplotlib.pyplot as plt

    from numpy_impl.modern.moe import LoadBalancingLoss, MixtralTopKRouter

    rng = np.random.default_rng(0)
    # A shared offset makes every token lean the same way: an unbalanced start.
    tokens = rng.standard_normal((TOKENS, HIDDEN)) + 1.0  # (N, C)
    router = MixtralTopKRouter(HIDDEN, EXPERTS, TOP_K, dtype="float64", rng=rng)
    loss_fn = LoadBalancingLoss(EXPERTS, TOP_K, dtype="float64")
    before = expert_share(router, tokens)
    losses = train(router, loss_fn, tokens)
    after = expert_share(router, tokens)

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.4
    experts = np.arange(EXPERTS)
    axes[0].bar(experts - width / 2, before, width, label="random router")
    axes[0].bar(experts + width / 2, after, width, label=f"after {STEPS} SGD steps on the aux loss")
    axes[0].axhline(1 / EXPERTS, color="k", linestyle="--", linewidth=1)
    axes[0].set(xlabel="expert", ylabel="share of top-2 choices", title=f"{TOKENS} tokens, {EXPERTS} experts, top-{TOP_K}")
    axes[0].legend()
    axes[1].plot(losses)
    axes[1].axhline(TOP_K, color="k", linestyle="--", linewidth=1)
    axes[1].set(xlabel="SGD step", ylabel="load-balancing loss", title="X Σ f_e P_e (balanced: top_k)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"largest share before {before.max():.3f}, after {after.max():.3f}; loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    draw(start_figure(__file__))
