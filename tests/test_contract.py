"""One contract, every registered method: finite losses, gradients only where they belong,
frozen teacher, uni- and multivariate, both prefix modes, several earliness values, seeded."""
from __future__ import annotations

import pytest
import torch

from earlykd.distill import METHODS, Batch, TeacherOutputs, build_method
from earlykd.models import build_model
from earlykd.prefix import make_prefix

STEPS, CLASSES, BATCH = 20, 3, 6
CASES = [(channels, e, mode) for channels in (1, 3) for e in (0.2, 0.5, 1.0) for mode in ("stretch", "truncate")]


def setup(name: str, channels: int, earliness: float, mode: str, seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(BATCH, channels, STEPS)
    y = torch.arange(BATCH) % CLASSES
    teacher = build_model("fcn", channels, CLASSES, layers=2, hidden=6).eval()
    with torch.no_grad():
        out = teacher(x)
    cached = TeacherOutputs(out.logits, out.feature, out.hidden)
    student = build_model("lstm", channels, CLASSES, layers=1, hidden=5)
    distiller = build_method(name, student, cached.dims, warmup=2)
    batch = Batch(make_prefix(x, earliness, mode), y, cached if distiller.needs_teacher else None)
    return teacher, distiller, batch


def epochs_to_check(distiller) -> list[int]:
    return [0, distiller.warmup] if distiller.two_stage else [0]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_registry_entry(name):
    cls = METHODS[name]
    assert cls.name == name and cls.description.strip()
    assert all(isinstance(v, (int, float)) for v in cls.defaults.values())


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("channels,earliness,mode", CASES)
def test_losses_finite_and_gradients_confined(name, channels, earliness, mode):
    teacher, distiller, batch = setup(name, channels, earliness, mode)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.SGD(list(distiller.parameters()) + list(teacher.parameters()), lr=0.1)
    for epoch in epochs_to_check(distiller):
        distiller.train()
        opt.zero_grad()
        logits, losses = distiller.forward_train(batch, epoch)
        assert logits.shape == (BATCH, CLASSES)
        hint_only_warmup = distiller.name == "fitnets" and epoch < distiller.warmup   # the release's FitNets
        assert ("ce" in losses) != hint_only_warmup and all(v.dim() == 0 for v in losses.values())
        total = sum(losses.values())
        assert torch.isfinite(total), (epoch, {k: v.item() for k, v in losses.items()})
        total.backward()
        assert all(p.grad is None for p in teacher.parameters()), "gradient reached the teacher"
        student_grads = [p.grad for p in distiller.student.parameters() if p.grad is not None]
        assert student_grads and any(g.abs().sum() > 0 for g in student_grads), "student got no gradient"
        assert all(torch.isfinite(g).all() for g in student_grads)
        opt.step()
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items()), "teacher changed"
    if batch.teacher is not None:
        assert not any(t.requires_grad for t in (batch.teacher.logits, batch.teacher.feature, batch.teacher.hidden))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_inference_is_the_student_alone(name):
    _, distiller, batch = setup(name, 2, 0.5, "truncate")
    distiller.eval()
    with torch.no_grad():
        assert torch.equal(distiller(batch.x), distiller.student(batch.x).logits)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_same_seed_same_loss(name):
    def losses(seed):
        torch.manual_seed(123)
        _, distiller, batch = setup(name, 2, 0.4, "stretch", seed)
        torch.manual_seed(7)
        out = []
        for epoch in epochs_to_check(distiller):
            _, terms = distiller.forward_train(batch, epoch)
            out.append({k: v.item() for k, v in terms.items()})
        return out

    assert losses(0) == losses(0)
