"""The Gaussian latent-factor model of DLF and its EM pieces (docs/dlf.md has the derivations).

Per mini-batch of B design points and n teachers: teacher i's logits F_i (B x c) are
M + P W_i L^T + noise, with M = mu (B x c), P = Phi (B x q), W_i = Z_i^T (q x c) iid N(0, 1) and
row-wise noise variances var_b (a scalar sigma^2, or per point). Residuals R_i = F_i - M come as a
tensor R of shape (n, B, c).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Posterior:
    """q(W_i) = N(mean_i, (U kron V) diag(1/D) (U kron V)^T), the covariance shared by every teacher."""
    mean: torch.Tensor  # (n, q, c)
    V: torch.Tensor     # (q, q): eigenvectors of P~^T P~ (P~ = P with rows scaled by 1/sqrt(var))
    U: torch.Tensor     # (c, c): eigenvectors of L^T L
    D: torch.Tensor     # (q, c): 1 + lam_k * gam_a

    def to(self, dtype: torch.dtype) -> "Posterior":
        return Posterior(self.mean.to(dtype), self.V.to(dtype), self.U.to(dtype), self.D.to(dtype))


def _scaled(P: torch.Tensor, R: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    root = var.rsqrt()
    return P * root[:, None], R * root[None, :, None]


@torch.no_grad()
def e_step(R: torch.Tensor, P: torch.Tensor, L: torch.Tensor, var: torch.Tensor) -> Posterior:
    """Exact posterior of every W_i given the batch (computed in float64, returned in P's dtype)."""
    dtype = P.dtype
    R, P, L, var = (t.detach().double() for t in (R, P, L, var))
    Pt, Rt = _scaled(P, R, var)
    lam, V = torch.linalg.eigh(Pt.T @ Pt)
    gam, U = torch.linalg.eigh(L.T @ L)
    lam, gam = lam.clamp_min(0), gam.clamp_min(0)
    D = 1 + lam[:, None] * gam[None, :]
    core = V.T @ torch.einsum("bq,nbc->nqc", Pt, Rt) @ L @ U        # (n, q, c)
    mean = V @ (core / D) @ U.T
    return Posterior(mean, V, U, D).to(dtype)


def neg_q(R: torch.Tensor, P: torch.Tensor, L: torch.Tensor, var: torch.Tensor, post: Posterior) -> torch.Tensor:
    """-Q: minus the expected complete-data log-likelihood under `post`, summed over teachers and
    points, without the terms that do not depend on the parameters (prior of W, 2 pi)."""
    n, c = R.shape[0], R.shape[2]
    fit = ((R - P @ post.mean @ L.T) ** 2 / var[None, :, None]).sum()
    a = ((P * var.rsqrt()[:, None]) @ post.V).pow(2).sum(0)          # [V^T P~^T P~ V]_kk
    g = (L @ post.U).pow(2).sum(0)                                   # [U^T L^T L U]_aa
    trace = (a[:, None] * g[None, :] / post.D).sum()
    return 0.5 * fit + 0.5 * n * trace + 0.5 * n * c * var.log().sum()


def neg_joint(R: torch.Tensor, P: torch.Tensor, L: torch.Tensor, var: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """-log p(F | W, parameters) with free per-teacher W (n, q, c), for the initialisation."""
    n, c = R.shape[0], R.shape[2]
    fit = ((R - P @ W @ L.T) ** 2 / var[None, :, None]).sum()
    return 0.5 * fit + 0.5 * n * c * var.log().sum()


def noise_variance(R: torch.Tensor, P: torch.Tensor, L: torch.Tensor, post: Posterior | None,
                   W: torch.Tensor | None = None) -> torch.Tensor:
    """The closed-form M-step for a scalar noise variance (no gradient): the mean squared residual
    E|R_i - P W_i L^T|^2 / (n B c) under `post` (or with fixed factors W), which maximises Q (or the
    joint likelihood) in sigma^2 with everything else held."""
    with torch.no_grad():
        n, B, c = R.shape
        if post is None:
            return ((R - P @ W @ L.T) ** 2).sum() / (n * B * c)
        # -Q at unit variance is (fit + n trace) / 2 with the posterior of the current sigma^2
        return 2 * neg_q(R, P, L, torch.ones(B, dtype=P.dtype, device=P.device), post) / (n * B * c)


def helmert(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(n, n) orthonormal rotation of n members: n - 1 contrasts (rows orthogonal to the all-ones vector),
    then the scaled mean (all 1 / sqrt(n))."""
    H = torch.zeros(n, n, dtype=dtype, device=device)
    for k in range(1, n):
        H[k - 1, :k] = 1.0
        H[k - 1, k] = -float(k)
        H[k - 1] /= (k * (k + 1)) ** 0.5
    H[n - 1] = n ** -0.5
    return H


def mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased squared MMD between samples x (a, d) and y (b, d), RBF kernel of bandwidth^2 = d."""
    def k(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * a.shape[1]))
    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def prior_mmd(W: torch.Tensor) -> torch.Tensor:
    """MMD of the rows and of the columns of every W_i (iid N(0, I) under the prior) against as many
    standard-normal draws (from torch's global generator)."""
    rows = W.reshape(-1, W.shape[2])                  # n*q vectors in R^c
    cols = W.transpose(1, 2).reshape(-1, W.shape[1])  # n*c vectors in R^q
    return mmd(rows, torch.randn_like(rows)) + mmd(cols, torch.randn_like(cols))


def predictive_stats(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logit draws (S, B, c) -> mean probabilities (B, c), predictive entropy and mutual information (B,)."""
    log_p = torch.log_softmax(logits, -1)
    probs = log_p.exp().mean(0)
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1)
    expected = -(log_p.exp() * log_p).sum(-1).mean(0)
    return probs, entropy, (entropy - expected).clamp_min(0)
