"""The generative prior of GDPD: teacher auto-encoder, epsilon-predicting denoiser, DDPM schedule."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TeacherAutoencoder(nn.Module):
    """Linear encoder + batch norm to the latent width, linear decoder back to the teacher width."""

    def __init__(self, teacher_dim: int, latent_dim: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(teacher_dim, latent_dim), nn.BatchNorm1d(latent_dim))
        self.decoder = nn.Linear(latent_dim, teacher_dim)

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (latent, reconstruction MSE)."""
        latent = self.encoder(feature)
        return latent, F.mse_loss(self.decoder(latent), feature)


class Bottleneck(nn.Module):
    """Residual bottleneck block on vectors, as the release's (on 1x1 maps its convolutions are linear):
    C -> C/r -> C/r -> C, each followed by batch norm (ReLU after the first two), plus x."""

    def __init__(self, width: int, reduction: int = 4):
        super().__init__()
        mid = max(1, width // reduction)
        self.body = nn.Sequential(
            nn.Linear(width, mid), nn.BatchNorm1d(mid), nn.ReLU(),
            nn.Linear(mid, mid), nn.BatchNorm1d(mid), nn.ReLU(),
            nn.Linear(mid, width), nn.BatchNorm1d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def frozen_program(module: nn.Module) -> list[tuple]:
    """module as a flat list of functional steps with every batch norm on its running statistics (as in eval
    mode, whatever the module's mode). Read once, run many times (the DDIM chain's steps share one).
    Sequential, Linear, BatchNorm1d, ReLU and Bottleneck."""
    kind = type(module)
    if kind is nn.Sequential:
        return [step for layer in module for step in frozen_program(layer)]
    if kind is nn.Linear:
        return [("linear", module.weight, module.bias)]
    if kind is nn.BatchNorm1d:
        return [("norm", module.running_mean, module.running_var, module.weight, module.bias, module.eps)]
    if kind is nn.ReLU:
        return [("relu", module.inplace)]
    if kind is Bottleneck:
        return [("residual", frozen_program(module.body))]
    raise TypeError(f"frozen_program: unsupported module {kind.__name__}")


def run_program(program: list[tuple], x: torch.Tensor) -> torch.Tensor:
    """The same ops as the modules' own forward in eval mode, so the same numbers."""
    for step in program:
        op = step[0]
        if op == "linear":
            x = F.linear(x, step[1], step[2])
        elif op == "norm":
            x = F.batch_norm(x, step[1], step[2], step[3], step[4], False, 0.0, step[5])
        elif op == "relu":
            x = F.relu(x, inplace=step[1])
        else:
            x = x + run_program(step[1], x)
    return x


def run_frozen(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x) with batch norms on running statistics, without switching any module's mode."""
    return run_program(frozen_program(module), x)


class Denoiser(nn.Module):
    """eps(x_t, t), as released: a learned timestep embedding added to the input, two residual bottleneck
    blocks, then a linear (1x1) projection and batch norm."""

    def __init__(self, width: int, timesteps: int = 1000):
        super().__init__()
        self.time = nn.Embedding(timesteps, width)
        self.blocks = nn.Sequential(Bottleneck(width), Bottleneck(width), nn.Linear(width, width),
                                    nn.BatchNorm1d(width))
        self._index: dict[tuple, torch.Tensor] = {}   # chain timesteps as an index tensor, per device

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """t: one timestep per sample, or one int shared by the batch (the DDIM chain)."""
        return self.blocks(x + (self.time.weight[t] if isinstance(t, int) else self.time(t)))

    def rows(self, timesteps: list[int]) -> torch.Tensor:
        """The embedding rows of a chain's timesteps, (steps, width), in one gather."""
        weight = self.time.weight
        key = (tuple(timesteps), weight.device)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = torch.tensor(timesteps, device=weight.device, dtype=torch.long)
        return weight[index]


class NoiseSchedule(nn.Module):
    """DDPM schedule: linear betas; alpha_bar[t] = prod_{s <= t} (1 - beta_s), t = 0 .. T-1."""

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        alpha_bar = torch.cumprod(1 - betas, 0)
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)
        # q(x_t | x_0)'s coefficients, computed once in float32 exactly as add_noise used to per batch
        self.register_buffer("sqrt_alpha_bar", self.alpha_bar.sqrt(), persistent=False)
        self.register_buffer("sqrt_one_minus_alpha_bar", (1 - self.alpha_bar).sqrt(), persistent=False)
        self.alpha_bar_values = alpha_bar.tolist()  # Python floats: chain coefficients cost no tensor ops
        self.plans: dict[tuple[int, ...], list[tuple[float, float]]] = {}  # DDIM coefficients per grid

    @property
    def timesteps(self) -> int:
        return len(self.alpha_bar)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)."""
        return self.sqrt_alpha_bar[t].unsqueeze(-1) * x0 + self.sqrt_one_minus_alpha_bar[t].unsqueeze(-1) * noise


class DiffusionPrior(nn.Module):
    """Denoiser + schedule; `loss` is the DDPM noise-prediction loss with t uniform per sample.

    `denoiser` (any module eps(x, t)) defaults to the GDPD `Denoiser`; tests swap it."""

    def __init__(self, width: int, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 denoiser: nn.Module | None = None):
        super().__init__()
        self.schedule = NoiseSchedule(timesteps, beta_start, beta_end)
        self.denoiser = Denoiser(width, timesteps) if denoiser is None else denoiser

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        if isinstance(t, int) and not isinstance(self.denoiser, Denoiser):  # other denoisers take a tensor
            t = torch.full((len(x),), t, dtype=torch.long, device=x.device)
        return self.denoiser(x, t)

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        t = torch.randint(0, self.schedule.timesteps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        return F.mse_loss(self(self.schedule.add_noise(x0, noise, t), t), noise)
