"""ARIA-style sampling for the anytime student: tracker bound, allocation floor, regions, default path."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from earlykd.config import DEFAULTS, config_hash
from earlykd.data import load_raw, prepare
from earlykd.distill import METHODS, TeacherOutputs
from earlykd.early.anytime import LevelSplit, train_anytime
from earlykd.early.aria import AriaConfig, AriaSampler, Regions, Tracker, probabilities
from earlykd.errors import EarlykdError

LEVELS = [0.05, 0.1, 0.15, 0.2, 0.6, 1.0]   # 2 bins: five levels in the first, one in the second


@pytest.fixture(scope="module")
def data():
    return prepare(load_raw({"name": "UnitTest"}), length=32)


def teacher(n: int, seed: int = 0) -> TeacherOutputs:
    g = torch.Generator().manual_seed(seed)
    return TeacherOutputs(torch.randn(n, 2, generator=g), torch.randn(n, 8, generator=g),
                          torch.randn(n, 32, 8, generator=g))


def sampler(data, options: dict, d: np.ndarray | None = None, epochs: int = 10) -> AriaSampler:
    cfg = AriaConfig.of({"bins": 2, "groups": "classes", "warmup_share": 0.0, **options})
    y = data.labels["train"]
    split = LevelSplit.of(data, "train", LEVELS, "truncate", None, teacher(len(y)))
    s = AriaSampler(split, Regions(cfg, LEVELS, split.teacher.feature, y, 0), cfg, split.teacher.logits, epochs)
    if d is not None:
        s.tracker.d = np.asarray(d, float)
    return s


def region_counts(s: AriaSampler, batches: int = 4000) -> np.ndarray:
    """How often each region is drawn, pair by pair, over many batches (tracker held fixed)."""
    rng, counts = np.random.default_rng(1), np.zeros(len(s.regions))
    for _ in range(batches // 2):
        for batch, _ in s.batches(rng, 8):
            level = next(m for m, v in enumerate(s.split.views) if v.shape[-1] == batch.x.shape[-1])
            rows = [int(np.flatnonzero((s.split.views[level] == x).all(-1).all(-1))[0]) for x in batch.x]
            np.add.at(counts, s.regions.index[level, rows], 1)
    return counts / counts.sum()


# -- tracker ------------------------------------------------------------------------------------------

def test_tracker_stays_within_its_bound_under_drift_and_noise():
    """EMA m_t = (1 - b) m_{t-1} + b x_t of x_t = mu_t + xi_t with |xi_t| <= s and |mu_t - mu_{t-1}| <= D.
    The error e_t = m_t - mu_t obeys |e_t| <= (1 - b)(|e_{t-1}| + D) + b s, whose fixed point is
    B = s + (1 - b) D / b; starting at the first observation (|e_0| <= s <= B) it never leaves [-B, B]."""
    beta, sigma, drift, steps = 0.1, 0.3, 0.02, 4000
    bound = sigma + (1 - beta) * drift / beta
    rng = np.random.default_rng(0)
    for noise in ("uniform", "adversarial"):
        tracker = Tracker(3, beta)
        mu = np.array([1.0, 5.0, 0.0])
        worst = 0.0
        for t in range(steps):
            r = int(rng.integers(3))                     # one region observed per step, the others wait
            step = 1.0 if rng.random() < 0.5 + 0.45 * np.sign(np.sin(t / 300)) else -1.0
            mu[r] += drift * step                        # drift between two observations of a region <= D
            xi = rng.uniform(-sigma, sigma, 4) if noise == "uniform" else np.full(4, sigma * (-1) ** (t // 50))
            tracker.update(np.full(4, r), mu[r] + xi)
            worst = max(worst, abs(tracker.d[r] - mu[r]))
        assert worst <= bound + 1e-9
    # the bound is tight: a steady ramp without noise settles at a lag of (1 - b) D / b
    tracker, mu = Tracker(1, beta), 0.0
    for _ in range(400):
        mu += drift
        tracker.update(np.zeros(1, int), np.array([mu]))
    assert mu - tracker.d[0] == pytest.approx((1 - beta) * drift / beta, rel=1e-3)


def test_tracker_update_rule_and_unseen_regions():
    tracker = Tracker(3, 0.25)
    assert np.all(tracker.estimates() == 1.0)                     # nothing seen: all equal
    tracker.update(np.array([0, 0, 1]), np.array([1.0, 3.0, 4.0]))
    assert tracker.d[0] == 2.0 and tracker.d[1] == 4.0          # first observation: the batch mean
    assert tracker.estimates()[2] == 3.0                         # unseen: the mean of the seen ones
    tracker.update(np.array([0]), np.array([6.0]))
    assert tracker.d[0] == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)


# -- allocation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps,temperature", [(0.0, 1.0), (0.2, 1.0), (0.5, 0.3)])
def test_sampling_is_uniform_when_discrepancies_are_equal(data, eps, temperature):
    for value in (0.0, 1e-6, 2.5):
        assert np.allclose(probabilities(np.full(7, value), eps, temperature), 1 / 7, rtol=0, atol=1e-12)
    s = sampler(data, {"eps": eps, "temperature": temperature}, np.full(4, 0.7))
    assert sorted(s.regions.sizes.tolist()) != [s.regions.sizes[0]] * 4      # regions of unequal size
    assert np.allclose(region_counts(s), 1 / 4, atol=0.02)                # still a quarter each


def test_every_region_keeps_at_least_eps_over_k(data):
    rng = np.random.default_rng(0)
    for eps in (0.05, 0.2, 0.6):
        for d in (rng.exponential(1, 9), np.array([1e6] + [0.0] * 8), rng.exponential(1, 9) ** 8, np.zeros(9)):
            for temperature in (0.05, 1.0, 10.0):
                p = probabilities(d, eps, temperature)
                assert p.sum() == pytest.approx(1.0) and p.min() >= eps / 9 - 1e-12
    s = sampler(data, {"eps": 0.2, "temperature": 0.05}, [50.0, 0.0, 0.0, 0.0])
    counts = region_counts(s)
    assert counts[0] > 0.75 and counts[1:].min() >= 0.2 / 4 - 0.012       # the floor holds in the draws too


def test_importance_weights_are_clipped_share_over_probability(data):
    s = sampler(data, {"weights": True, "clip": 2.0}, [50.0, 0.0, 0.0, 0.0])
    for batch, _ in s.batches(np.random.default_rng(0), 8):
        assert 0 < s._weight <= 2.0
    p = s.probabilities()
    assert np.all(np.minimum(s.share / p, 2.0) <= 2.0) and s.share.sum() == pytest.approx(1.0)


def test_bad_aria_settings_are_errors():
    for bad in ({"eps": 1.5}, {"beta": 0}, {"groups": "kmeans"}, {"clusters": 0}, {"bogus": 1}, {"weights": "yes"}):
        with pytest.raises(EarlykdError):
            AriaConfig.of(bad)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_with_aria_sampling(data, method):
    guide = {"train": teacher(len(data.labels["train"]))}
    outputs = guide if METHODS[method].needs_teacher else None
    options = {"bins": 2, "weights": True, "warmup_share": 0.3}
    train = {**TRAIN, "warmup": 1, "epochs": 3}
    _, fit, _, sampler = train_anytime(data, outputs, method, {}, MODEL, train, LEVELS, "truncate", None,
                                       torch.device("cpu"), aria={"config": options, "guide": guide})
    assert fit.epochs_run == 3 and all(np.isfinite(v) for row in fit.history for v in row.values())
    assert not np.isnan(sampler.tracker.d).all()                      # the tracker saw the training forward passes


# -- regions --------------------------------------------------------------------------------------------

def test_earliness_bins_and_region_index(data):
    s = sampler(data, {})
    assert s.regions.bins.tolist() == [0, 0, 0, 0, 1, 1]
    y = data.labels["train"].numpy()
    assert np.array_equal(s.regions.index[0], y) and np.array_equal(s.regions.index[-1], 2 + y)
    assert s.regions.sizes.sum() == len(LEVELS) * len(y)


def _cache(path):
    from earlykd.train.checkpoint import load_tensors
    (file,) = path.glob("teacher_outputs-*.safetensors")
    return file, *load_tensors(file)


def test_regions_are_computed_from_training_data_only(teacher_dir, tmp_path):
    """Scrambling the teacher's validation and test outputs leaves the regions as they were; scrambling its
    training outputs does not (so the check can fail)."""
    from earlykd import cli
    from earlykd.train.checkpoint import save_tensors
    base = ["early", "--method", "kd", "--sampling", "aria", "--aria", "groups=features", "--aria", "clusters=2",
            "--levels", "0.25,0.5", "--epochs", "2", "--batch-size", "8", "--no-progress"]

    def regions(splits):
        t = tmp_path / f"teacher-{'-'.join(splits) or 'asis'}"
        shutil.copytree(teacher_dir, t)
        if splits:
            assert cli.main([*base[:1], "--teacher", str(t), *base[1:], "--out", str(t / "warm")]) == 0
            file, tensors, meta = _cache(t)
            g = torch.Generator().manual_seed(7)
            for key in list(tensors):
                if key.split(".")[0] in splits:
                    tensors[key] = torch.randn(tensors[key].shape, generator=g) * 5
            save_tensors(file, tensors, meta)
        out = t / "aria"
        assert cli.main([*base[:1], "--teacher", str(t), *base[1:], "--out", str(out)]) == 0
        return json.loads((out / "run.json").read_text())["aria"]["regions"]

    asis = regions(())
    assert asis["kind"] == "features" and asis["n_groups"] == 2
    assert regions(("val", "test")) == asis
    assert regions(("train",))["train_groups"] != asis["train_groups"]


# -- the default path -------------------------------------------------------------------------------------

TRAIN = {"epochs": 3, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant", "select": "loss",
         "seed": 0, "min_epochs": 0, "patience": None, "progress": False, "checkpoint_every": 0, "warmup": 0}
MODEL = {"arch": "fcn", "layers": 1, "hidden": 8}


def test_default_path_is_the_uniform_level_split(data):
    """train_anytime without aria trains exactly what a Trainer on a LevelSplit trains (no wrapper, no sampler),
    with the student's batch-norm statistics kept per level and refitted at the end."""
    from earlykd.distill import build_method
    from earlykd.models import build_model, fit_level_stats, set_level, use_level_norm
    from earlykd.train import Trainer
    outputs = {"train": teacher(len(data.labels["train"]))}
    distiller, _, _ = train_anytime(data, outputs, "kd", {}, MODEL, TRAIN, LEVELS, "truncate", None,
                                      torch.device("cpu"))
    assert "forward_train" not in vars(distiller)
    torch.manual_seed(0)
    train = LevelSplit.of(data, "train", LEVELS, "truncate", None, outputs["train"])
    student = use_level_norm(build_model("fcn", 1, 2, 1, 8), len(LEVELS))
    train.on_level = lambda k: set_level(student, k)
    ref = build_method("kd", student, outputs["train"].dims, {}, 0)
    Trainer(ref, TRAIN, torch.device("cpu")).fit(train, LevelSplit.of(data, "val", LEVELS, "truncate", None))
    fit_level_stats(student, train.views)
    assert all(torch.equal(a, b) for a, b in zip(distiller.student.state_dict().values(),
                                                   ref.student.state_dict().values()))
    # and the uniform draws are the original ones: a permutation, then one level per batch
    rng, check = np.random.default_rng(3), np.random.default_rng(3)
    shapes = [b.x.shape[-1] for b, _ in train.batches(rng, 8)]
    order = check.permutation(len(train))
    levels = check.integers(len(LEVELS), size=-(-len(order) // 8) if len(order) % 8 != 1 else len(order) // 8)
    assert shapes == [train.views[m].shape[-1] for m in levels]


def test_uniform_switch_is_the_default_and_keeps_hashes(teacher_dir, tmp_path):
    from earlykd import cli
    from earlykd.train import load_model
    base = ["early", "--teacher", str(teacher_dir), "--method", "kd", "--levels", "0.25,0.5", "--epochs", "2",
            "--batch-size", "8", "--no-progress"]
    assert cli.main([*base, "--out", str(tmp_path / "default")]) == 0
    assert cli.main([*base, "--sampling", "uniform", "--out", str(tmp_path / "uniform")]) == 0
    runs = [json.loads((tmp_path / n / "run.json").read_text()) for n in ("default", "uniform")]
    assert runs[0]["test_levels"] == runs[1]["test_levels"] and runs[0]["sampling"] == "uniform"
    assert runs[0]["config_hash"] == runs[1]["config_hash"] and "aria" not in runs[0]
    weights = [load_model(tmp_path / n / "model.safetensors")[0].state_dict() for n in ("default", "uniform")]
    assert all(torch.equal(a, b) for a, b in zip(weights[0].values(), weights[1].values()))
    cfg = {"train": {"seed": 0}, "early": json.loads(json.dumps(DEFAULTS["early"]))}
    assert config_hash(cfg) == config_hash({"train": {"seed": 0}})          # as before the key existed
    cfg["early"]["sampling"] = "aria"
    assert config_hash(cfg) != config_hash({"train": {"seed": 0}})


def test_an_interrupted_aria_run_resumes_to_the_same_student(teacher_dir, tmp_path, monkeypatch):
    from conftest import interrupt_at

    from earlykd import cli
    from earlykd.train import load_model
    base = ["early", "--teacher", str(teacher_dir), "--method", "kd", "--sampling", "aria", "--levels", "0.25,0.5",
            "--epochs", "6", "--batch-size", "8", "--no-progress", "--set", "train.checkpoint_every=2"]
    assert cli.main([*base, "--out", str(tmp_path / "whole")]) == 0
    undo = interrupt_at(monkeypatch, 3)
    assert cli.main([*base, "--out", str(tmp_path / "cut")]) != 0
    undo()
    assert (tmp_path / "cut" / "aria_state.json").is_file()
    assert cli.main([*base, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    runs = [json.loads((tmp_path / n / "run.json").read_text()) for n in ("whole", "cut")]
    assert runs[0]["aria"]["trace"] == runs[1]["aria"]["trace"] and runs[0]["test_levels"] == runs[1]["test_levels"]
    weights = [load_model(tmp_path / n / "model.safetensors")[0].state_dict() for n in ("whole", "cut")]
    assert all(torch.equal(a, b) for a, b in zip(weights[0].values(), weights[1].values()))
    assert not (tmp_path / "cut" / "aria_state.json").exists()
