"""Bad data files and arrays: exit code 2 and one line naming the file, row or field; in the API, EarlykdError."""
import numpy as np
import pytest

from earlykd import api
from earlykd.cli_text import table
from earlykd.data import load_raw, prepare
from earlykd.errors import EarlykdError

from conftest import assert_clean_error, run_cli

LABELS = np.array(["a", "b"] * 6)


def teacher_args(tmp_path, data, *extra):
    return ["teacher", "--data", data, *extra, "--epochs", "1", "--no-progress", "--out", tmp_path / "out"]


@pytest.fixture
def good_npz(tmp_path):
    path = tmp_path / "good.npz"
    np.savez(path, X=np.random.default_rng(0).normal(size=(12, 16)), y=LABELS)
    return path


@pytest.fixture
def good_csv(tmp_path):
    rows = [[label, *np.round(np.random.default_rng(i).normal(size=8), 3)] for i, label in enumerate(LABELS)]
    path = tmp_path / "good.csv"
    path.write_text("".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def archive(tmp_path, name, suffix, text):
    folder = tmp_path / "archive" / name
    folder.mkdir(parents=True)
    for split in ("TRAIN", "TEST"):
        (folder / f"{name}_{split}{suffix}").write_text(text)
    return tmp_path / "archive"


# 1: an empty archive folder
def test_table_without_rows():
    assert table([], ["name", "train"]).splitlines() == ["name  train", "----  -----", "(none)"]


def test_datasets_of_an_empty_archive(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli(capsys, "datasets", "--archive", tmp_path / "empty")
    assert_clean_error(code, err, "no dataset folders", str(tmp_path / "empty"))


# 2: archive files that do not parse
@pytest.mark.parametrize("suffix,text,needles", [
    (".ts", "garbage\n", ["Foo_TRAIN.ts", "no series"]),
    (".tsv", "1\t0.1\t0.2\n2\tx\t0.3\n", ["Foo_TRAIN.tsv", "row 2", "non-numeric value 'x'"]),
])
def test_unparsable_archive_file(tmp_path, capsys, suffix, text, needles):
    root = archive(tmp_path, "Foo", suffix, text)
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, "Foo", "--archive", root))
    assert_clean_error(code, err, *needles)
    code, out, err = run_cli(capsys, "datasets", "--archive", root)
    assert code == 0 and "unreadable" in out and needles[0] in out, out + err


# 3: a truncated .npz, wherever a file is read
def test_truncated_npz(tmp_path, capsys, good_npz, teacher_dir):
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good_npz.read_bytes()[:300])
    for args in (teacher_args(tmp_path, trunc, "--test-path", good_npz),
                 ["evaluate", teacher_dir, "--test-path", trunc],
                 ["predict", teacher_dir, "--input", trunc]):
        code, _, err = run_cli(capsys, *args)
        assert_clean_error(code, err, str(trunc), "not a valid .npz")
    with pytest.raises(EarlykdError, match="trunc.npz: not a valid .npz"):
        api.predict(teacher_dir, trunc)
    with pytest.raises(EarlykdError, match="trunc.npz: not a valid .npz"):
        api.evaluate(teacher_dir, test_path=trunc)


# 4: object arrays in a .npz; a text file named .npy
def test_object_array_in_npz(tmp_path, capsys, good_npz):
    bad = tmp_path / "obj.npz"
    np.savez(bad, X=np.array([np.ones(3), np.ones(4)], dtype=object), y=LABELS[:2])
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, bad, "--test-path", good_npz))
    assert_clean_error(code, err, str(bad), "field 'X'", "dtype object")
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, good_npz, "--test-path", bad))
    assert_clean_error(code, err, str(bad), "field 'X'", "dtype object")


@pytest.mark.parametrize("sep,name", [(";", "semicolons"), ("\t", "tabs")])
def test_a_csv_separated_otherwise_than_by_commas_is_named(tmp_path, capsys, teacher_dir, sep, name):
    bad = tmp_path / "other.csv"
    bad.write_text("".join(sep.join(["a", "1", "2", "3"]) + "\n" for _ in range(3)))
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", bad)
    assert_clean_error(code, err, str(bad), f"single field with {name}", "comma-separated")


def test_text_file_named_npy(tmp_path, capsys, teacher_dir):
    bad = tmp_path / "text.npy"
    bad.write_text("hello\n1,2,3\n")
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", bad)
    assert_clean_error(code, err, str(bad), "not a numeric NumPy array", "no .npy header", "numpy.save)")
    assert "pickle" not in err
    bad = tmp_path / "text.npz"
    bad.write_text("hello\n1,2,3\n")
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", bad)
    assert_clean_error(code, err, str(bad), "no .npz header", "numpy.savez, with an array X")


# 5: complex (and bool) arrays
def test_complex_and_bool_arrays(tmp_path, capsys, teacher_dir, good_npz):
    c = tmp_path / "c.npy"
    np.save(c, np.ones((3, 20)) * 1j)
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", c)
    assert_clean_error(code, err, str(c), "complex")
    cz = tmp_path / "c.npz"
    np.savez(cz, X=np.ones((12, 16)) * 1j, y=LABELS)
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, cz, "--test-path", good_npz))
    assert_clean_error(code, err, str(cz), "complex")
    b = tmp_path / "b.npy"
    np.save(b, np.ones((3, 20), dtype=bool))
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", b)
    assert_clean_error(code, err, str(b), "not numeric", "bool")


# 6: in-memory series of the wrong shape or type (checked before the run is read)
@pytest.mark.parametrize("series,pattern", [
    (np.zeros(12), r"1-D array of shape \(12,\)"),
    (np.zeros((2, 1, 3, 12)), r"4-D array"),
    (np.full((3, 12), "x"), r"not numeric \(dtype <U1\)"),
    (np.ones((3, 12)) * 1j, r"complex"),
    (None, r"series is None"),
    ([np.zeros(12), "abc"], r"row 2 is not numeric"),
])
def test_api_predict_refuses_bad_series(tmp_path, series, pattern):
    with pytest.raises(EarlykdError, match=pattern):
        api.predict(tmp_path, series)


# 7: an empty label cell; a negative label column
def test_empty_label_cell(tmp_path, capsys, good_csv):
    lines = good_csv.read_text().splitlines()
    lines[3] = "," + lines[3].split(",", 1)[1]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, bad, "--test-path", good_csv))
    assert_clean_error(code, err, str(bad), "row 4", "column 0 (0-based)", "empty label")


def test_negative_label_column(tmp_path, capsys, good_csv):
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, good_csv, "--test-path", good_csv,
                                                 "--set", "data.label_column=-1"))
    assert_clean_error(code, err, str(good_csv), "label column -1", "negative")


# 8: channels differ between train and test
def test_channel_mismatch_names_the_test_file(tmp_path, capsys, good_npz):
    test = tmp_path / "test.npz"
    np.savez(test, X=np.random.default_rng(1).normal(size=(12, 3, 16)), y=LABELS)
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, good_npz, "--test-path", test))
    assert_clean_error(code, err, str(test), "train has 1 channels but test has 3")


# 9: the API names the validation fraction without a CLI flag
def test_api_bad_val_fraction():
    raw = load_raw({"name": "UnitTest"})
    with pytest.raises(EarlykdError, match=r"val_fraction 1\.5 must be in \[0, 1\)") as info:
        prepare(raw, length=16, val_fraction=1.5)
    assert "--" not in str(info.value)


# 10: columns are named as --label-column counts them, from 0; a text column suggests --label-column
def test_bad_cell_names_its_file_column(tmp_path, capsys, good_csv):
    rows = [line.split(",") for line in good_csv.read_text().splitlines()]
    for row in rows:
        row.insert(3, row.pop(0))       # the label in column 3
    rows[2][1] = "oops"
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(",".join(row) + "\n" for row in rows))
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, bad, "--test-path", good_csv, "--set", "data.label_column=3"))
    assert_clean_error(code, err, str(bad), "row 3, column 1 (0-based): non-numeric value 'oops'")
    assert "--label-column" not in err


def test_label_in_last_column_is_suggested(tmp_path, capsys, good_csv):
    rows = [line.split(",") for line in good_csv.read_text().splitlines()]
    bad = tmp_path / "last.csv"
    bad.write_text("".join(",".join(row[1:] + row[:1]) + "\n" for row in [["label", *map("t{}".format, range(8))]] + rows))
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, bad, "--test-path", good_csv))
    assert_clean_error(code, err, str(bad), "row 1, column 8 (0-based): non-numeric value 'a'",
                       "is the label in column 8? say so with --label-column 8", "--set data.label_column=8")


# 11: a file type that is not read names the ones that are
def test_unsupported_file_extension(tmp_path, capsys, monkeypatch, good_csv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gp_train_h.tsv").write_text("1\t0.1\t0.2\n")
    for data in ("gp_train_h.tsv", tmp_path / "gp_train_h.tsv"):
        code, _, err = run_cli(capsys, *teacher_args(tmp_path, data, "--test-path", good_csv))
        assert_clean_error(code, err, "gp_train_h.tsv: unsupported file type '.tsv'", "use .csv, .npy or .npz")
        assert "unknown dataset" not in err


# 12: ragged CSV rows (series as far as they have arrived), the first one shorter, for training and prediction
def test_ragged_csv_rows_first_one_shorter(tmp_path, capsys, good_csv, teacher_dir):
    lines = good_csv.read_text().splitlines()
    lines[0] = ",".join(lines[0].split(",")[:5])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join(lines) + "\n")
    data = prepare(load_raw({"name": str(ragged), "test_path": str(ragged)}), length=8, val_fraction=0)
    assert data.series["train"][0].shape == (1, 4) and data.reference_length == 8
    new = tmp_path / "new.csv"
    new.write_text("0.1,0.2,0.3\n" + ",".join(["0.5"] * 24) + "\n")
    code, out, err = run_cli(capsys, "predict", teacher_dir, "--input", new, "--label-column", "none")
    assert code == 0 and out.count("\n") == 3, err
    assert "1 row(s) have fewer samples than a whole series (24)" in err


# 13: series longer than the longest training series are read up to it, with a warning
def test_longer_series_are_named(tmp_path, capsys, teacher_dir):
    X = np.stack([s[0] for s in load_raw({"name": "UnitTest"}).X_test[:4]])
    longer = tmp_path / "longer.csv"
    longer.write_text("".join(f"{i % 2 + 1}," + ",".join(map(str, [*row, *row[:6]])) + "\n" for i, row in enumerate(X)))
    code, _, err = run_cli(capsys, "evaluate", teacher_dir, "--test-path", longer)
    assert code == 0, err
    assert "warning: 4 row(s) are longer than the longest training series (24 samples); read up to sample 24" in err


def test_a_label_free_csv_given_to_predict_is_warned_about(teacher_dir, tmp_path, capsys):
    """The run's label column (0) is dropped from every file; when that column looks like data, say so."""
    X = np.stack([s[0] for s in load_raw({"name": "UnitTest"}).X_test[:4]])
    bare = tmp_path / "bare.csv"
    bare.write_text("".join(",".join(map(str, row)) + "\n" for row in X))
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", bare)
    assert code == 0 and "column 0 (0-based) was dropped as the run's label column, but with it the rows hold 24" in err
    part = tmp_path / "part.csv"
    part.write_text("".join(",".join(map(str, row[:12])) + "\n" for row in X))
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", part)
    assert code == 0 and "it holds numbers, not the run's classes; if the file has no labels, pass --label-column none" in err
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", part, "--label-column", "0")
    assert "--label-column none" not in err   # the user said so
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("".join(f"{i % 2 + 1}," + ",".join(map(str, row)) + "\n" for i, row in enumerate(X)))
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", labelled)
    assert code == 0 and "warning" not in err and "label column 0 (0-based) ignored" in err, err


def test_series_longer_than_the_longest_training_series_are_named(teacher_dir, tmp_path, capsys):
    X = np.stack([s[0] for s in load_raw({"name": "UnitTest"}).X_test[:4]])
    np.save(tmp_path / "long.npy", np.concatenate([X, X[:, :6]], 1))
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", tmp_path / "long.npy")
    assert code == 0 and "4 row(s) are longer than the longest training series (24 samples)" in err, err
    rng = np.random.default_rng(0)   # (evaluate --test-path: test_longer_series_are_named)
    y = np.array(["a", "b"] * 6)
    np.savez(tmp_path / "tr.npz", X=rng.normal(size=(12, 10)), y=y)
    np.savez(tmp_path / "te.npz", X=rng.normal(size=(12, 14)), y=y)
    code, _, err = run_cli(capsys, "teacher", "--data", tmp_path / "tr.npz", "--test-path", tmp_path / "te.npz",
                           "--epochs", "1", "--no-progress", "--length", "8", "--out", tmp_path / "o")
    assert code == 0 and "warning: 12 test series are longer than the longest training series (10 samples)" in err, err
