"""Batched soft-DTW (Cuturi & Blondel, ICML 2017) in plain PyTorch, differentiable by autograd.

R[i, j] = C[i, j] + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1]), R[0, 0] = 0, other borders +inf,
softmin_gamma(a, b, c) = -gamma * log(exp(-a / gamma) + exp(-b / gamma) + exp(-c / gamma)),
C = squared Euclidean costs between steps; the value is R[N, M] (unnormalised). Cells on one
anti-diagonal i + j = d are independent, so the loop runs over the N + M - 1 diagonals.
"""
import torch


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, N, H), (B, M, H) -> (B, N, M) squared Euclidean distances between steps."""
    cross = x @ y.transpose(1, 2)
    return (x.pow(2).sum(2, keepdim=True) + y.pow(2).sum(2).unsqueeze(1) - 2 * cross).clamp_min(0)


def soft_dtw(x: torch.Tensor, y: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Soft-DTW between x (B, N, H) and y (B, M, H) with squared Euclidean costs -> (B,)."""
    cost = squared_distances(x, y)
    batch, n, m = cost.shape
    # costs by anti-diagonal, gathered once: diagonal d, entry i holds C[i-1, d-i-1] (0 off the grid)
    d, i = torch.meshgrid(torch.arange(n + m + 1), torch.arange(n + 1), indexing="ij")
    j = d - i
    on_grid = ((i >= 1) & (j >= 1) & (j <= m)).to(x.device)
    padded = torch.nn.functional.pad(cost, (1, 0, 1, 0))
    diagonals = (padded[:, i, j.clamp(0, m)] * on_grid).unbind(1)
    inf = cost.new_full((batch, 1), float("inf"))
    # the recursion keeps two diagonals of R, each as R[i, d - i] for i = 0..n (+inf off the grid)
    before = torch.cat([cost.new_zeros(batch, 1), inf.expand(batch, n)], 1)   # d = 0
    last = inf.expand(batch, n + 1)                                             # d = 1
    for d in range(2, n + m + 1):
        lo, hi = max(1, d - m), min(n, d - 1)
        prior = torch.stack([before[:, lo - 1:hi], last[:, lo - 1:hi], last[:, lo:hi + 1]])
        value = diagonals[d][:, lo:hi + 1] - gamma * torch.logsumexp(-prior / gamma, 0)
        before, last = last, torch.cat([inf.expand(batch, lo), value, inf.expand(batch, n - hi)], 1)
    return last[:, n]
