"""PyTorch tree: ``torch.nn.Module``s written from each day's math; autograd gives the gradients."""
