"""gdpd (Generative Diffusion Prior Distillation): the student's feature, fused with noise, is the start
of a short DDIM chain under a diffusion prior of teacher features; the resulting "hint" goes through the
student's own head and is scored with cross-entropy, gradients flowing back through the chain.

Stage 1 (epoch < warm-up): CE + weight * (diffusion loss on detached AE latents + AE reconstruction).
Stage 2: CE + weight * mean over `samples` hints of CE(head(hint), y). Inference: the student alone.

Choices gdpd.md leaves open (see the module's options):
- use_autoencoder = 0: no AE; the prior models the teacher feature itself at its own width, standardised
  by a non-learned batch norm (affine=False), so the student-to-latent map and the post-chain projection
  change width (student -> teacher -> student).
- The denoiser's batch norms use their running statistics inside the chain (chain_batch_stats = 0):
  all samples of a chain step share one t, so batch statistics would subtract the timestep embedding
  and erase the time conditioning learnt in stage 1. chain_batch_stats = 1 uses batch statistics.
- joint = 1: every loss from epoch 0 and no warm-up (checkpoint selection also starts at epoch 0).
- teacher_head = 1 (the paper's prose: the hint is classified by the teacher's frozen head): the latent hint
  is mapped back to the teacher's width by the AE's decoder (or the standardisation undone), both frozen,
  and scored by the teacher's (an ensemble's lead member's) head; the student's head is then not used.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import EarlykdError
from ..base import Distiller, register
from ..kd import soft_kl
from .prior import Bottleneck, Denoiser, DiffusionPrior, TeacherAutoencoder, run_frozen
from .sampler import ddim_chain


class NoiseAdapter(nn.Module):
    """alpha in (0, 1) from the student's latent (the student feature mapped to the latent width), as
    released: a bottleneck block with reduction 8, then a 2-way softmax per sample (width 1) or per
    latent feature (width = latent; identical to a sigmoid per feature)."""

    def __init__(self, latent_dim: int, width: int):
        super().__init__()
        self.width = width
        self.net = nn.Sequential(Bottleneck(latent_dim, reduction=8), nn.Linear(latent_dim, 2 * width))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        logits = self.net(latent).view(len(latent), 2, self.width)
        return logits.softmax(dim=1)[:, 0]   # (B, 1) or (B, width)


@register
class GDPD(Distiller):
    name = "gdpd"
    description = "diffusion prior of teacher features; CE of the DDIM hint from the student feature"
    defaults = {
        "weight": 1.0,             # lambda
        "steps": 5,                # DDIM reverse steps (0: the fused start is the hint)
        "start": 400,              # timestep the fused start is treated as
        "timesteps": 1000,         # T of the DDPM schedule
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "samples": 1,              # J hint samples per step
        "alpha_per_feature": 0,    # 0: one alpha per sample; 1: one per latent feature
        "use_autoencoder": 1,
        "use_prior": 1,            # 0: ablation, hint = projected student feature, no chain
        "hint_head_own": 1,        # 1: the student's head scores the hint; 0: a separate linear head
        "hinton": 0,               # 1: add weight * tau^2 * KL to the teacher (the release's script)
        "temperature": 2.0,
        "joint": 0,                # 1: ablation, all losses from epoch 0, no warm-up
        "chain_batch_stats": 0,    # 1: denoiser batch norms use batch statistics inside the chain
        "keep_diffusion": 0,       # 1: stage 2 keeps the diffusion (+ AE) loss on, tying the prior to the teacher
        "freeze_prior": 0,         # 1: the prior, adapter and AE stop learning after the warm-up
        "average_probs": 0,        # 1: the J hints' probabilities are averaged before the log (else their CEs)
        "teacher_head": 0,         # 1: the hint, decoded to the teacher's width, is scored by the teacher's frozen head
    }
    two_stage = True
    fused_auxiliary = True   # ~50 tensors of prior, adapter, map and projection: Adam's cost would rival the student's

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        o = self.options
        self.joint = bool(o["joint"])
        if self.joint:
            self.warmup = 0
        width = student.feature_dim
        latent = width if o["use_autoencoder"] else teacher.feature_dim
        self.to_latent = nn.Linear(width, latent)
        self.project = nn.Sequential(nn.Linear(latent, width), nn.BatchNorm1d(width))
        self.hint_head = None if o["hint_head_own"] else nn.Linear(width, student.n_classes)
        self.autoencoder = self.standardise = self.prior = self.adapter = None
        if o["use_prior"]:
            if o["use_autoencoder"]:
                self.autoencoder = TeacherAutoencoder(teacher.feature_dim, latent)
            else:
                self.standardise = nn.BatchNorm1d(latent, affine=False)
            self.prior = DiffusionPrior(latent, int(o["timesteps"]), o["beta_start"], o["beta_end"])
            self.adapter = NoiseAdapter(latent, latent if o["alpha_per_feature"] else 1)
        self._pending: list[tuple] = []      # per step: (cases, mean alpha, summed distance), as tensors
        self._sums: dict[str, float] = {}
        self._prior_frozen = False

    def selection_state(self) -> dict[str, torch.Tensor]:
        """The student alone: the prior, adapter, map and projection serve training only."""
        return {f"student.{k}": v for k, v in self.student.state_dict().items()}

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        o = super().resolve_options(options)
        cls._check(o)
        return o

    @staticmethod
    def _check(o: dict) -> None:
        def whole(key, low, high=None):
            v = o[key]
            if not float(v).is_integer() or v < low or (high is not None and v > high):
                top = "inf" if high is None else high
                raise EarlykdError(f"gdpd option '{key}' must be an integer in [{low}, {top}], got {v}")
        whole("timesteps", 1)
        whole("steps", 0)
        whole("start", 0, int(o["timesteps"]) - 1)
        whole("samples", 1)
        for key in ("alpha_per_feature", "use_autoencoder", "use_prior", "hint_head_own", "hinton", "joint",
                    "chain_batch_stats", "keep_diffusion", "freeze_prior", "average_probs", "teacher_head"):
            whole(key, 0, 1)
        if not 0 < o["beta_start"] <= o["beta_end"] < 1:
            raise EarlykdError("gdpd options need 0 < beta_start <= beta_end < 1")
        if not 0 < o["temperature"] < math.inf:
            raise EarlykdError(f"gdpd option 'temperature' must be > 0, got {o['temperature']!r}")
        if o["teacher_head"] and not o["use_prior"]:
            raise EarlykdError("gdpd option teacher_head = 1 needs use_prior = 1 (the hint is decoded by the prior's "
                               "autoencoder or standardisation)")

    # -- the hint -------------------------------------------------------------------------------
    def chain(self, z: torch.Tensor) -> torch.Tensor:
        """DDIM from t = start; the denoiser's batch norms use running statistics unless told otherwise."""
        start, steps = int(self.options["start"]), int(self.options["steps"])
        running = not self.options["chain_batch_stats"]
        if isinstance(self.prior.denoiser, Denoiser) or not (running and self.prior.training):
            return ddim_chain(self.prior, z, start, steps, running_stats=running)
        self.prior.eval()   # another denoiser: running statistics by its mode
        try:
            return ddim_chain(self.prior, z, start, steps)
        finally:
            self.prior.train()

    def latent_hint(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Student feature -> latent -> noise fusion -> DDIM chain: (latent hint, alpha)."""
        z, alpha = self.to_latent(feature), None
        if self.prior is not None:
            alpha = self.adapter(z)
            z = self.chain(alpha * z + (1 - alpha) * torch.randn_like(z))
        return z, alpha

    def hint(self, feature: torch.Tensor) -> torch.Tensor:
        """The latent hint, projected back to the student's width (+ batch norm)."""
        return self.project(self.latent_hint(feature)[0])

    @property
    def scoring_head(self) -> nn.Module:
        """What scores a hint: the student's own head, or a separate one (hint_head_own = 0)."""
        return self.student.head if self.hint_head is None else self.hint_head

    def hint_logits(self, feature: torch.Tensor) -> torch.Tensor:
        return self.score_hint(self.latent_hint(feature)[0])

    # -- the teacher's head (teacher_head = 1) ------------------------------------------------------
    @classmethod
    def wants_teacher_head(cls, options: dict) -> bool:
        return bool(options["teacher_head"])

    def attach_teacher_head(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """The teacher's (lead member's) linear head, kept frozen and outside the trained parameters."""
        if weight.shape != (self.teacher_dims.n_classes, self.teacher_dims.feature_dim):
            raise EarlykdError(f"teacher head has shape {tuple(weight.shape)}, expected "
                               f"{(self.teacher_dims.n_classes, self.teacher_dims.feature_dim)}")
        self.__dict__["_teacher_head"] = (weight.detach().clone(), bias.detach().clone())

    def to_teacher_width(self, z: torch.Tensor) -> torch.Tensor:
        """A latent hint in the teacher's feature space: the AE's decoder, or the standardisation undone, both
        frozen (gradients reach z, not the decoder)."""
        if self.autoencoder is not None:
            dec = self.autoencoder.decoder
            return F.linear(z, dec.weight.detach(), dec.bias.detach())
        bn = self.standardise
        return z * (bn.running_var.detach() + bn.eps).sqrt() + bn.running_mean.detach()

    def score_hint(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of a latent hint: the student's (or a separate) head on the projected hint, or with
        teacher_head = 1 the teacher's frozen head on the hint decoded to the teacher's width."""
        if not self.options["teacher_head"]:
            return self.scoring_head(self.project(z))
        head = self.__dict__.get("_teacher_head")
        if head is None:
            raise EarlykdError("gdpd option teacher_head = 1 needs the teacher's head, which this entry point "
                               "does not provide (earlykd distill and bench do)")
        weight, bias = (t.to(z.device) for t in head)
        return F.linear(self.to_teacher_width(z), weight, bias)

    # -- what the chain does (history rows: alpha, hint_distance) ----------------------------------
    @torch.no_grad()
    def _track(self, z: torch.Tensor, alpha: torch.Tensor | None, teacher_feature: torch.Tensor,
               encoder_moves: bool = True) -> None:
        """Mean alpha, and the hint's relative L2 distance to the teacher's latent (encoded with running
        statistics, so nothing in training changes). Kept as tensors and read in bulk (no sync per step); while
        the encoder cannot move (stage 2 without the prior's losses) the distances too are computed in bulk,
        at the next fold."""
        distance = later = None
        if self._encoder() is not None:
            if encoder_moves:
                distance = self._distances(z, teacher_feature).sum()
            else:
                later = (z.detach(), teacher_feature)
        self._pending.append((len(z), alpha.mean() if alpha is not None else None, distance, later))
        if len(self._pending) >= 256:
            self._fold()

    def _encoder(self) -> nn.Module | None:
        return self.autoencoder.encoder if self.autoencoder is not None else self.standardise

    def _distances(self, z: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        target = run_frozen(self._encoder(), teacher_feature)
        return (z - target).norm(dim=1) / target.norm(dim=1).clamp_min(1e-8)

    def _fold(self) -> None:
        """Add the pending values to the epoch's sums, in double and in step order."""
        pending, self._pending = self._pending, []
        values = [v for _, alpha, distance, _ in pending for v in (alpha, distance) if v is not None]
        read = iter(torch.stack(values).tolist() if values else [])
        later = [x for *_, x in pending if x is not None]
        if later:
            with torch.no_grad():
                rows = iter(self._distances(*(torch.cat(parts) for parts in zip(*later))).tolist())
        sums = self._sums
        for cases, alpha, distance, deferred in pending:
            if alpha is not None:
                sums["alpha"] = sums.get("alpha", 0.0) + next(read) * cases
            if distance is not None or deferred is not None:
                step = next(read) if distance is not None else sum(next(rows) for _ in range(cases))
                sums["hint_distance"] = sums.get("hint_distance", 0.0) + step
            sums["n"] = sums.get("n", 0) + cases

    def diagnostics(self) -> dict[str, float]:
        self._fold()
        sums, self._sums = self._sums, {}
        n = sums.pop("n", 0)
        return {k: v / n for k, v in sums.items()} if n else {}

    # -- losses -----------------------------------------------------------------------------------
    def prior_losses(self, teacher_feature: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage-1 terms (unweighted): DDPM loss on the detached latent, AE reconstruction."""
        if self.autoencoder is not None:
            latent, recon = self.autoencoder(teacher_feature)
            return {"diffusion": self.prior.loss(latent.detach()), "recon": recon}
        return {"diffusion": self.prior.loss(self.standardise(teacher_feature))}

    def _freeze_prior(self) -> None:
        for module in (self.prior, self.adapter, self.autoencoder):
            if module is not None:
                module.requires_grad_(False)
        self._prior_frozen = True

    def _weighted(self, value: torch.Tensor) -> torch.Tensor:
        """weight * value; a weight of 1 changes no bit, so its multiply is skipped."""
        w = self.options["weight"]
        return value if w == 1 else w * value

    def distill_losses(self, out, batch, epoch):
        o, y = self.options, batch.y
        stage2 = self.joint or epoch >= self.warmup
        losses = {}
        if stage2 and o["freeze_prior"] and not self.joint and not self._prior_frozen:
            self._freeze_prior()
        prior_on = self.joint or epoch < self.warmup or (o["keep_diffusion"] and not o["freeze_prior"])
        if self.prior is not None and prior_on:
            losses.update({k: self._weighted(v) for k, v in self.prior_losses(batch.teacher.feature).items()})
        if stage2:
            hints = [self.latent_hint(out.feature) for _ in range(int(o["samples"]))]
            logits = [self.score_hint(z) for z, _ in hints]
            if o["average_probs"]:
                log_probs = torch.stack([F.log_softmax(lg, 1) for lg in logits])
                losses["hint"] = self._weighted(F.nll_loss(torch.logsumexp(log_probs, 0) - math.log(len(logits)), y))
            else:
                hint = self._weighted(sum(F.cross_entropy(lg, y) for lg in logits))
                losses["hint"] = hint / len(logits) if len(logits) > 1 else hint   # x / 1 is x
            self._track(*hints[0], batch.teacher.feature, encoder_moves=prior_on)
        if o["hinton"]:
            losses["kd"] = self._weighted(soft_kl(out.logits, batch.teacher.logits, o["temperature"]))
        return losses
