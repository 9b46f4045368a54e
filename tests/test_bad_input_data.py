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


def test_text_file_named_npy(tmp_path, capsys, teacher_dir):
    bad = tmp_path / "text.npy"
    bad.write_text("hello\n1,2,3\n")
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", bad)
    assert_clean_error(code, err, str(bad), "not a numeric NumPy array")
    assert "pickle" not in err


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
    assert_clean_error(code, err, str(bad), "row 4", "column 1", "empty label")


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
