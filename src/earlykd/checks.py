"""Contract checks for what a registry holds, importable in the style of aeon's estimator checks.

    from earlykd.checks import check_method, check_architecture, check_policy
    check_method("my_method")          # a registered name, or the class itself

Each check raises AssertionError naming the entry and the broken rule, and returns None when the entry
keeps the contract. The test suite runs them over every registered method, architecture and policy;
a new entry (a file under distill/, models/ or decide/ with its register decorator) should pass them.
"""
from __future__ import annotations

import json

import numpy as np
import torch

STEPS, CLASSES, BATCH = 20, 3, 6
PREFIX_CASES = [(channels, e, mode) for channels in (1, 3) for e in (0.2, 0.5, 1.0) for mode in ("stretch", "truncate")]


def _entry(table: dict, entry, what: str):
    """The registered class of a name (an AssertionError naming it when unknown), or the class given."""
    if not isinstance(entry, str):
        return entry
    from .errors import did_you_mean
    if entry not in table:
        raise AssertionError(f"{what} '{entry}' is not registered ({did_you_mean(entry, sorted(table))})")
    return table[entry]


def _require(ok, entry: str, rule: str) -> None:
    if not ok:
        raise AssertionError(f"{entry}: {rule}")


# -- distillation methods ---------------------------------------------------------------------------------
def _method_setup(cls, channels: int, earliness: float, mode: str, seed: int = 0):
    from .distill import Batch, TeacherOutputs
    from .models import build_model
    from .prefix import make_prefix
    torch.manual_seed(seed)
    x = torch.randn(BATCH, channels, STEPS)
    y = torch.arange(BATCH) % CLASSES
    teacher = build_model("fcn", channels, CLASSES, layers=2, hidden=6).eval()
    with torch.no_grad():
        out = teacher(x)
    cached = TeacherOutputs(out.logits, out.feature, out.hidden)
    student = build_model("lstm", channels, CLASSES, layers=1, hidden=5)
    distiller = cls(student, cached.dims, {}, warmup=2)
    batch = Batch(make_prefix(x, earliness, mode), y, cached if distiller.needs_teacher else None)
    return teacher, distiller, batch


def _epochs(distiller) -> list[int]:
    return [0, distiller.warmup] if distiller.two_stage else [0]


def check_method(method) -> None:
    """A distillation method: registry entry; per prefix case, finite scalar losses with `ce` where the method's
    `trains_ce` says (FitNets' hint-only warm-up: not), gradients reaching the student and never the frozen teacher or its cached
    outputs; inference is the student alone; the same seed gives the same losses."""
    from .distill import METHODS, Distiller
    cls = _entry(METHODS, method, "method")
    name = f"method '{getattr(cls, 'name', cls)}'"
    _require(isinstance(cls, type) and issubclass(cls, Distiller), name, "is not a Distiller subclass")
    _require(METHODS.get(cls.name) is cls, name, "is not registered under its name")
    _require(isinstance(cls.description, str) and cls.description.strip(), name, "has no description")
    _require(all(isinstance(v, (int, float)) for v in cls.defaults.values()), name, "has a non-numeric default")
    for channels, earliness, mode in PREFIX_CASES:
        case = f"{name} ({channels} channel(s), e = {earliness}, {mode})"
        teacher, distiller, batch = _method_setup(cls, channels, earliness, mode)
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        opt = torch.optim.SGD(list(distiller.parameters()) + list(teacher.parameters()), lr=0.1)
        for epoch in _epochs(distiller):
            distiller.train()
            opt.zero_grad()
            logits, losses = distiller.forward_train(batch, epoch)
            _require(logits.shape == (BATCH, CLASSES), case, f"logits have shape {tuple(logits.shape)}")
            _require(("ce" in losses) == distiller.trains_ce(epoch), case,
                     f"epoch {epoch}: the 'ce' term is missing or misplaced (see Distiller.trains_ce)")
            _require(all(v.dim() == 0 for v in losses.values()), case, "a loss term is not a scalar")
            total = sum(losses.values())
            _require(torch.isfinite(total), case, f"epoch {epoch}: losses not finite {({k: v.item() for k, v in losses.items()})}")
            total.backward()
            _require(all(p.grad is None for p in teacher.parameters()), case, "a gradient reached the teacher")
            grads = [p.grad for p in distiller.student.parameters() if p.grad is not None]
            _require(grads and any(g.abs().sum() > 0 for g in grads), case, f"epoch {epoch}: the student got no gradient")
            _require(all(torch.isfinite(g).all() for g in grads), case, "a student gradient is not finite")
            opt.step()
        _require(all(torch.equal(before[k], v) for k, v in teacher.state_dict().items()), case, "the teacher changed")
        if batch.teacher is not None:
            _require(not any(t.requires_grad for t in (batch.teacher.logits, batch.teacher.feature,
                                                       batch.teacher.hidden)), case, "the teacher's outputs need grad")
    _, distiller, batch = _method_setup(cls, 2, 0.5, "truncate")
    distiller.eval()
    with torch.no_grad():
        _require(torch.equal(distiller(batch.x), distiller.student(batch.x).logits), name,
                 "inference is not the student alone")
    _require(_seeded_losses(cls) == _seeded_losses(cls), name, "the same seed gave different losses")


def _seeded_losses(cls) -> list[dict]:
    torch.manual_seed(123)
    _, distiller, batch = _method_setup(cls, 2, 0.4, "stretch")
    torch.manual_seed(7)
    return [{k: v.item() for k, v in distiller.forward_train(batch, epoch)[1].items()} for epoch in _epochs(distiller)]


# -- architectures ----------------------------------------------------------------------------------------
def check_architecture(arch) -> None:
    """An architecture: registry entry; for 1 and 3 channels and series of 2 and 20 steps, logits
    (B, classes), a feature (B, feature_dim) whose head gives the logits and a hidden sequence (B, steps,
    hidden_dim); in eval mode a case's output does not depend on the rest of its batch; every parameter
    gets a finite gradient; the same seed builds the same model."""
    from .models import ARCHITECTURES, Classifier, build_model
    cls = _entry(ARCHITECTURES, arch, "architecture")
    name = f"architecture '{getattr(cls, 'arch', cls)}'"
    _require(isinstance(cls, type) and issubclass(cls, Classifier), name, "is not a Classifier subclass")
    _require(ARCHITECTURES.get(cls.arch) is cls, name, "is not registered under its name")
    _require(all(isinstance(cls.defaults.get(k), int) for k in ("layers", "hidden")), name,
             "defaults need integer 'layers' and 'hidden'")
    for channels in (1, 3):
        for steps in (2, STEPS):
            case = f"{name} ({channels} channel(s), {steps} steps)"
            torch.manual_seed(0)
            model = build_model(cls.arch, channels, CLASSES, layers=1, hidden=8)
            x = torch.randn(BATCH, channels, steps)
            out = model(x)
            _require(out.logits.shape == (BATCH, CLASSES), case, f"logits have shape {tuple(out.logits.shape)}")
            _require(out.feature.shape == (BATCH, model.feature_dim), case, "feature is not (batch, feature_dim)")
            _require(out.hidden.dim() == 3 and out.hidden.shape[0] == BATCH and out.hidden.shape[2] == model.hidden_dim,
                     case, f"hidden has shape {tuple(out.hidden.shape)}, expected (batch, steps, hidden_dim)")
            _require(torch.allclose(model.head(out.feature), out.logits, atol=1e-6), case, "head(feature) is not the logits")
            out.logits.square().sum().backward()
            missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
            _require(not missing, case, f"no finite gradient for {', '.join(missing[:3])}")
            model.eval()
            with torch.no_grad():
                alone = torch.cat([model(x[i:i + 1]).logits for i in range(BATCH)])
                _require(torch.allclose(model(x).logits, alone, atol=1e-5), case,
                         "in eval mode a case's logits depend on the rest of its batch")
    torch.manual_seed(1)
    a = build_model(cls.arch, 2, CLASSES).state_dict()
    torch.manual_seed(1)
    b = build_model(cls.arch, 2, CLASSES).state_dict()
    _require(all(torch.equal(a[k], b[k]) for k in a), name, "the same seed built different weights")


# -- stopping policies ------------------------------------------------------------------------------------
def check_policy(policy) -> None:
    """A stopping policy: registry entry; calibrated on validation it stores as JSON and rebuilds to the
    same decisions; every case is decided by the last checkpoint; a case's stop depends neither on
    checkpoints after it (no look-ahead) nor on the other cases in the batch."""
    from .decide import POLICIES, build_policy, first_stops
    from .decide.base import Policy
    cls = _entry(POLICIES, policy, "policy")
    name = f"policy '{getattr(cls, 'name', cls)}'"
    _require(isinstance(cls, type) and issubclass(cls, Policy), name, "is not a Policy subclass")
    _require(POLICIES.get(cls.name) is cls, name, "is not registered under its name")
    _require(isinstance(cls.description, str) and cls.description.strip(), name, "has no description")
    rng = np.random.default_rng(0)
    checkpoints, cases, classes, width = 6, 40, 3, 5
    y = rng.integers(classes, size=cases)

    def sample(labels):
        """Logits that grow more confident in `labels` checkpoint by checkpoint, and features."""
        logits = rng.normal(size=(checkpoints, cases, classes))
        logits[np.arange(checkpoints)[:, None], np.arange(cases), labels] += np.linspace(0, 4, checkpoints)[:, None]
        return logits, rng.normal(size=(checkpoints, cases, width)) if cls.needs_features else None

    earliness = np.linspace(1 / checkpoints, 1, checkpoints)
    val_logits, val_features = sample(y)
    fitted = cls().calibrate(val_logits, y, earliness, val_features)
    _require(0 <= fitted.validation["hm"] <= 1, name, "calibration gave no validation HM in [0, 1]")
    logits, features = sample(rng.integers(classes, size=cases))
    stops = first_stops(fitted, logits, features)
    _require(((0 <= stops) & (stops < checkpoints)).all(), name, "a case was not decided by the last checkpoint")
    stored = build_policy(json.loads(json.dumps(fitted.to_dict())))
    _require((first_stops(stored, logits, features) == stops).all(), name, "the stored policy decides differently")
    parts = [slice(0, 1), slice(1, cases // 2), slice(cases // 2, cases)]   # one case, then two groups
    apart = np.concatenate([first_stops(fitted, logits[:, part], None if features is None else features[:, part])
                            for part in parts])
    _require((apart == stops).all(), name, "a case's stop depends on the other cases in its batch")
    later = np.arange(checkpoints)[:, None] > stops[None, :]          # checkpoints after each case's stop
    other_logits, other_features = sample(rng.integers(classes, size=cases))
    changed = np.where(later[..., None], other_logits, logits)
    changed_features = None if features is None else np.where(later[..., None], other_features, features)
    _require((first_stops(fitted, changed, changed_features) == stops).all(), name,
             "a case's stop depends on checkpoints after it")
