"""Data path: loaders, cleaning, resampling, split, standardisation and prefixes."""
import shutil

import numpy as np
import pytest
import torch

from earlykd.data import bundled_datasets, load_raw, prepare
from earlykd.data.load import aeon_data_dir, read_array_file
from earlykd.data.prepare import clean_series
from earlykd.errors import EarlykdError
from earlykd.prefix import interpolate, make_prefix, observe, prefix_steps


def test_bundled_classification_datasets_found_offline():
    names = bundled_datasets()
    for name in ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "ACSF1", "BasicMotions",
                 "JapaneseVowels", "PickupGestureWiimoteZ", "UnitTest"):
        assert name in names
    assert "Airline" not in names  # a forecasting series, not a classification dataset


def test_gunpoint_prepared():
    data = prepare(load_raw({"name": "GunPoint"}), length=100, val_fraction=0.2, split_seed=0)
    assert data.X_train.shape == (40, 1, 100) and data.X_val.shape == (10, 1, 100)
    assert data.X_test.shape == (150, 1, 100) and data.classes == ["1", "2"]
    assert data.reference_length == 150 and data.equal_length
    # standardised with the fit split's statistics only
    assert data.X_train.mean().abs() < 1e-5 and (data.X_train.std() - 1).abs() < 0.02
    assert data.X_test.mean().abs() > 1e-4
    # stratified: both classes in validation
    assert set(data.y_val.tolist()) == {0, 1}


def test_unequal_lengths_share_one_time_scale():
    raw = load_raw({"name": "JapaneseVowels"})
    data = prepare(raw, length=50)
    assert data.X_train.shape[1:] == (12, 50) and not data.equal_length
    assert data.reference_length == max(s.shape[-1] for s in raw.X_train)  # the longest training series


def test_split_is_seeded():
    raw = load_raw({"name": "GunPoint"})
    a, b, c = (prepare(raw, 100, 0.2, s) for s in (0, 0, 1))
    assert torch.equal(a.y_val, b.y_val) and torch.equal(a.X_val, b.X_val)
    assert not torch.equal(a.X_val, c.X_val)


def test_clean_series_trims_and_keeps_gaps():
    x = np.array([[1.0, np.nan, 3.0, 4.0, np.nan, np.nan]])
    out = clean_series(x, "row 1")
    assert np.array_equal(out, [[1.0, np.nan, 3.0, 4.0]], equal_nan=True)
    with pytest.raises(EarlykdError, match="row 3: series is all NaN"):
        clean_series(np.full((1, 5), np.nan), "row 3")
    with pytest.raises(EarlykdError, match="infinite"):
        clean_series(np.array([[1.0, np.inf]]), "row 1")


def test_gaps_take_earlier_values_only():
    x = [np.array([[np.nan, 1.0, np.nan, np.nan, 4.0]]), np.array([[2.0, 3.0]])]
    out = observe(x, 4)
    # leading NaN stays unobserved; a gap and an ended series hold the last value seen
    assert np.array_equal(out[:, 0], [[np.nan, 1.0, 1.0, 1.0], [2.0, 3.0, 3.0, 3.0]], equal_nan=True)


def test_interpolate_by_hand():
    x = np.array([[0.0, 10.0, 20.0]])
    assert np.allclose(interpolate(x, np.array([0.0, 0.5, 1.25, 2.0])), [[0.0, 5.0, 12.5, 20.0]])


@pytest.mark.parametrize("e,steps", [(0.2, 20), (0.25, 25), (0.333, 34), (1.0, 100), (0.01, 1)])
def test_prefix_steps_ceil(e, steps):
    assert prefix_steps(e, 100) == steps


def test_prefix_modes():
    x = torch.arange(10.0).reshape(1, 1, 10)
    assert make_prefix(x, 0.3, "truncate").tolist() == [[[0.0, 1.0, 2.0]]]
    stretched = make_prefix(x, 0.3, "stretch")
    assert stretched.shape == (1, 1, 10)
    assert stretched[0, 0, 0] == 0 and stretched[0, 0, -1] == 2  # first 3 steps spread over 10
    assert torch.equal(make_prefix(x, 1.0, "stretch"), x)
    multi = torch.randn(2, 4, 10)
    assert torch.equal(make_prefix(multi, 1.0, "truncate", channels=[0, 2]), multi[:, [0, 2]])


@pytest.mark.parametrize("e", [0.0, -0.1, 1.5, 0.005])
def test_prefix_rejects_bad_earliness(e):
    with pytest.raises(EarlykdError, match="earliness"):
        make_prefix(torch.zeros(1, 1, 100), e)


@pytest.mark.parametrize("suffix", [".ts", ".tsv", ".arff"])
def test_archive_loaders(tmp_path, suffix):
    src = aeon_data_dir() / "GunPoint"
    folder = tmp_path / "GunPoint"
    folder.mkdir()
    shutil.copy(src / f"GunPoint_TRAIN{suffix}", folder)
    shutil.copy(src / "GunPoint_TEST.ts", folder)
    raw = load_raw({"name": "GunPoint", "archive": str(tmp_path)})
    assert len(raw.X_train) == 50 and raw.X_train[0].shape == (1, 150) and len(raw.X_test) == 150


def test_user_csv_and_npz(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("label,t0,t1,t2\na,1,2,3\nb,4,,6\na,7,8,9\n")
    series, labels = read_array_file(csv, "label")
    assert labels.tolist() == ["a", "b", "a"]
    np.testing.assert_array_equal(series[1], [[4.0, np.nan, 6.0]])
    npz = tmp_path / "d.npz"
    np.savez(npz, X=np.zeros((4, 2, 7)), y=np.array(["x", "y", "x", "y"]))
    series, labels = read_array_file(npz)
    assert len(series) == 4 and series[0].shape == (2, 7) and labels.tolist() == ["x", "y", "x", "y"]


def test_user_files_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 12)):
        X = rng.normal(size=(n, 40))
        y = np.array(["up", "down"] * (n // 2))
        X[y == "up"] += np.linspace(0, 2, 40)
        np.savez(tmp_path / f"{split}.npz", X=X, y=y)
    raw = load_raw({"name": str(tmp_path / "train.npz"), "test_path": str(tmp_path / "test.npz")})
    data = prepare(raw, length=20, val_fraction=0.2)
    assert data.classes == ["down", "up"] and data.X_train.shape == (24, 1, 20) and data.X_test.shape == (12, 1, 20)


def test_a_registered_data_source_is_asked_first_and_feeds_the_pipeline():
    """A new source (here: series made in memory) plugs in with register_source; the built-in ones still
    answer what it does not claim, and a duplicate name is one clear line."""
    import numpy as np

    from earlykd.data import SOURCES, RawData, load_raw, prepare, register_source
    from earlykd.errors import EarlykdError

    def make(cfg):
        rng = np.random.default_rng(0)
        X = [rng.normal(size=(1, 12)) for _ in range(20)]
        y = np.array(["a", "b"] * 10)
        return RawData(cfg["name"], X, y, X[:6], y[:6], "memory:" + cfg["name"])

    register_source("memory", lambda cfg: str(cfg["name"]).startswith("mem:"), first=True)(make)
    try:
        assert load_raw({"name": "mem:toy"}).source == "memory:mem:toy"
        assert load_raw({"name": "GunPoint"}).source == "aeon:GunPoint"
        data = prepare(load_raw({"name": "mem:toy"}), length=12)
        assert data.n_classes == 2 and data.view("test").shape[0] == 6
        with pytest.raises(EarlykdError, match="already registered"):
            register_source("memory", lambda cfg: False)(make)
    finally:
        SOURCES[:] = [s for s in SOURCES if s.name != "memory"]


def test_ragged_csv_rows_in_any_order(tmp_path):
    """Rows of different lengths (series as far as they have arrived) read alike whatever their order;
    a shorter row ends in NaN, which cleaning trims."""
    rows = ["a,1,2", "b,1,2,3,4", "a,5,6,7"]
    for name, order in (("short_first.csv", rows), ("long_first.csv", sorted(rows, key=len, reverse=True))):
        (tmp_path / name).write_text("\n".join(order) + "\n")
    series, labels = read_array_file(tmp_path / "short_first.csv")
    assert labels.tolist() == ["a", "b", "a"]
    np.testing.assert_array_equal(series[0], [[1.0, 2.0, np.nan, np.nan]])
    assert [clean_series(s, "").shape[-1] for s in series] == [2, 4, 3]
    other, _ = read_array_file(tmp_path / "long_first.csv")
    assert sorted(s.tobytes() for s in series) == sorted(s.tobytes() for s in other)
    (tmp_path / "new.csv").write_text("1,2\n1,2,3,4\n")   # prediction input: no label column
    info = {}
    series, _ = read_array_file(tmp_path / "new.csv", None, need_labels=False, info=info)
    assert info["columns"] == 4 and [clean_series(s, "").shape[-1] for s in series] == [2, 4]


def test_test_series_longer_than_training_are_named():
    data = prepare(load_raw({"name": "JapaneseVowels"}), length=50)
    longer = sum(s.shape[-1] > data.reference_length for s in data.series["test"])
    assert longer > 0 and data.warnings == [
        f"{longer} test series {'is' if longer == 1 else 'are'} longer than the longest training series "
        f"({data.reference_length} samples); read up to sample {data.reference_length}"]
    assert prepare(load_raw({"name": "GunPoint"}), length=50).warnings == []


@pytest.mark.parametrize("text,label_column,expect", [
    ("0.5,1,2,3\n0.7,1,2,3\n", 0, "it holds numbers"),             # no header, numbers that are no class
    ("x,1,2,3,4\ny,1,2,3,4\n", 0, "rows hold 5 values"),            # T values counting the dropped column
    ("1,1,2,3\n2,1,2,3\n", 0, None),                                # every value a class: labels
    ("label,t0,t1\n0.5,1,2\n0.7,1,2\n", 0, None),                   # a header names it
    ("0.5,1,2,3\n", None, None),                                    # nothing dropped
])
def test_label_column_warning(tmp_path, text, label_column, expect):
    from earlykd.data.load import label_column_warning
    path = tmp_path / "new.csv"
    path.write_text(text)
    info = {}
    read_array_file(path, label_column, need_labels=False, info=info)
    lines = label_column_warning(path, info, reference_length=5, classes=["1", "2"])
    if expect is None:
        assert lines == []
    else:
        assert len(lines) == 1 and expect in lines[0] and "column 0 (0-based)" in lines[0]
        assert lines[0].endswith("pass --label-column none")
    assert label_column_warning(path, {}, 5, ["1", "2"]) == []       # .npy / .npz: no label column
