"""The prefix contract: at earliness e the student's input depends only on the first ceil(e*T) raw
samples of each series. Changing anything after them (values, NaN, the length of the rest) must
leave the input bit-identical, in both modes, for every bundled dataset and for random series."""
import numpy as np
import pytest
import torch

from earlykd import runs
from earlykd.data import bundled_datasets, load_raw, prepare
from earlykd.data.load import RawData
from earlykd.prefix import observed_samples, student_view
from earlykd.train import load_model, predict_logits

EARLINESS = (0.05, 0.2, 0.37, 0.5, 0.8, 1.0)
MODES = ("stretch", "truncate")


def change_future(series: list[np.ndarray], keep: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each series with everything after its first `keep` samples replaced: new values, NaN gaps,
    or a different length of the rest (cut off, or extended)."""
    out = []
    for i, s in enumerate(series):
        head = s[:, :keep]
        if s.shape[1] <= keep:  # nothing after the prefix to change
            out.append(s.copy())
            continue
        kind = i % 4
        if kind == 0:
            rest = rng.normal(size=(s.shape[0], s.shape[1] - keep)) * 100
        elif kind == 1:
            rest = s[:, keep:].copy()
            rest[:, ::2] = np.nan
            rest[:, -1] = 1.0  # keep the series' end observed
        elif kind == 2:
            rest = s[:, keep:keep + 1]  # the series now ends one sample after the prefix
        else:
            rest = rng.normal(size=(s.shape[0], 3 * s.shape[1]))  # a much longer rest
        out.append(np.concatenate([head, rest], axis=1))
    return out


def random_series(rng, n, channels, lengths, gaps: bool) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        s = rng.normal(size=(channels, int(rng.choice(lengths)))).cumsum(axis=1)
        if gaps and s.shape[1] > 4:
            start = int(rng.integers(1, s.shape[1] - 2))
            s[:, start:start + int(rng.integers(1, 4))] = np.nan
        out.append(s)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", MODES)
def test_random_series(seed, mode):
    rng = np.random.default_rng(seed)
    channels = 1 + seed % 3
    lengths = [37] if seed % 2 == 0 else [9, 20, 37, 61, 150]  # equal / unequal, shorter and longer than L
    series = random_series(rng, 12, channels, lengths, gaps=seed >= 2)
    reference = max(s.shape[1] for s in series)
    mean, std = torch.randn(channels), torch.rand(channels) + 0.5
    subset = [channels - 1] if channels > 1 else None
    for e in EARLINESS:
        keep = observed_samples(e, reference)
        before = student_view(series, e, mode, reference, 32, mean, std, subset)
        after = student_view(change_future(series, keep, rng), e, mode, reference, 32, mean, std, subset)
        assert torch.equal(before, after), (e, mode)
        assert torch.isfinite(before).all()


def test_a_change_inside_the_prefix_does_change_the_view():
    """The check above can fail: the last observed sample moves the view."""
    series = [np.arange(50.0)[None, :]]
    for mode in MODES:
        keep = observed_samples(0.2, 50)
        changed = [series[0].copy()]
        changed[0][0, keep - 1] += 1
        a = student_view(series, 0.2, mode, 50, 100, torch.zeros(1), torch.ones(1))
        b = student_view(changed, 0.2, mode, 50, 100, torch.zeros(1), torch.ones(1))
        assert not torch.equal(a, b)


@pytest.mark.parametrize("name", bundled_datasets())
def test_bundled_dataset_views_ignore_the_future(name):
    raw = load_raw({"name": name})
    data = prepare(raw, 100)
    rng = np.random.default_rng(0)
    for e in (0.2, 0.4, 0.8):
        keep = observed_samples(e, data.reference_length)
        changed = RawData(raw.name, raw.X_train, raw.y_train, change_future(raw.X_test, keep, rng), raw.y_test,
                          raw.source)
        other = prepare(changed, 100)
        assert other.reference_length == data.reference_length
        for mode in MODES:
            assert torch.equal(data.view("test", e, mode), other.view("test", e, mode)), (name, e, mode)


def test_shorter_than_model_length_never_sees_the_next_sample():
    """ItalyPowerDemand-like: 24 samples on 100 steps; at e = 0.2 the view uses samples 0..4 only."""
    series = [np.arange(24.0)[None, :] ** 2]
    for mode in MODES:
        view = student_view(series, 0.2, mode, 24, 100, torch.zeros(1), torch.ones(1))
        assert view.max().item() == 16.0  # sample 4 (= 4**2), never a blend with sample 5 (25)


@pytest.mark.parametrize("mode,data_name", [("stretch", "UnitTest"), ("truncate", "JapaneseVowels")])
def test_predict_on_raw_prefixes_equals_evaluation(mode, data_name, tmp_path):
    small = {"arch": "fcn", "layers": 1, "hidden": 8, "epochs": 2, "batch_size": 16, "progress": False}
    from earlykd import api
    teacher = api.train_teacher(data=data_name, out=str(tmp_path / "t"), **small)
    student = api.distill(teacher, method="kd", earliness=0.4, mode=mode, out=str(tmp_path / "s"), **small)
    cfg, _ = runs.read_run(student.path)
    data = runs.load_prepared(cfg["data"])
    model, _, _ = load_model(student.path / runs.MODEL_FILE)
    evaluated = torch.softmax(predict_logits(model, data.view("test", 0.4, mode)), 1).numpy()
    keep = observed_samples(0.4, data.reference_length)
    prefixes = [s[:, :keep] for s in data.series["test"]]
    _, predicted, notes = runs.predict(student.path, prefixes, device="cpu")
    assert np.allclose(evaluated, predicted, atol=1e-6) and notes["warnings"] == []
    _, whole, _ = runs.predict(student.path, data.series["test"], full=True, device="cpu")
    assert np.array_equal(predicted, whole)
