"""A one-page model card (model_card.md) written into every run directory: teachers and students
(`model_card`), anytime students with their stopping policies (`anytime_card`)."""
from __future__ import annotations

COLUMNS = ("auc_prc", "accuracy", "nll", "ece", "fidelity_top1")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _metrics_table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = ["| split | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    return lines + [f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in COLUMNS) + " |" for name, m in rows if m]


def _opening(cfg: dict, record: dict) -> list[str]:
    """Title, versions and the data section, shared by every kind of run."""
    d, info, cv = cfg["data"], record["data"], record.get("cv")
    splits = (f"- Splits: {info.get('train')} training and {info.get('val')} validation cases (stratified "
              f"{d['val_fraction']:.0%} of the training cases, split seed {d['split_seed']}), pooled for "
              f"{cv['folds']}-fold cross-validation and the refit; {info.get('test')} test cases" if cv else
              f"- Splits: {info.get('train')} training, {info.get('val')} validation (stratified "
              f"{d['val_fraction']:.0%} of the training cases, split seed {d['split_seed']}), {info.get('test')} test "
              "cases")
    return [f"# Model card: {record['kind']} {record['dataset']} ({record['student_arch']})", "",
            f"earlykd {record['version']}, torch {record['versions']['torch']}; seed {record['seed']}; config hash "
            f"{record['config_hash']}. The full settings are in `config.yaml`, the record in `run.json`.", "",
            "## Data", "",
            f"- Source: {info.get('source')} (`data.name`: {d['name']}"
            + (f", test file {d['test_path']}" if d.get("test_path") else "") + ").",
            splits + "; the test split is used only for the metrics below.",
            f"- Every series resampled to {d['length']} steps and standardised with statistics of the training "
            "split only.", ""]


def _model_line(cfg: dict, record: dict) -> str:
    options = cfg["method"]["options"] or {}
    return (f"- {record['student_arch']}, {cfg['model']['layers']} layers, width {cfg['model']['hidden']}; method "
            f"`{record['method']}`" + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "")
            + ".")


def _intended_use(dataset: str, how: str) -> list[str]:
    return ["", "## Intended use", "",
            f"- Classifying series of the same source and preparation as {dataset}, {how}.",
            "- A research artefact: one seed on one machine. Numbers move across seeds and machines "
            "(see the README on reproducibility); compare methods over several seeds.",
            "- Not validated on other data, sensors or sampling rates; check `earlykd evaluate RUN --test-path "
            "FILE` on labelled data of the intended use first."]


def model_card(cfg: dict, record: dict, teacher: dict | None) -> str:
    p, t = cfg["prefix"], cfg["train"]
    student = record["kind"] == "student"
    e = p["earliness"]
    lines = _opening(cfg, record) + ["## Earliness", ""]
    if student:
        lines.append(f"- The model sees the first {e:.0%} of each series (earliness {e}), prefix mode `{p['mode']}`"
                     + (f", channels {p['channels']}" if p.get("channels") else "") + ".")
    else:
        lines.append("- A teacher: it sees the full series (earliness 1.0).")
    cv, members = record.get("cv"), record.get("members")
    how = {"mean": "the mean of their probabilities", "best": "the member of best score"}.get(record.get("combine"), "")
    chosen = (f"an ensemble of {len(members)} member(s) ({how}), each a run "
              f"of its own under `members/` with its card; {record['epochs']} epochs over all members (a budget of "
              f"{t['epochs']} each)" if members else
              f"{record['epochs']} epochs (of a budget of {t['epochs']}) chosen by {cv['folds']}-fold stratified "
              f"cross-validation (mean fold accuracy {cv['acc']:.3f}, then loss), then a refit on all training and "
              f"validation cases; checkpoint of epoch {record['best_epoch']}, the refit's lowest training loss"
              if cv else
              f"{record['epochs']} epochs of {t['epochs']}; checkpoint of epoch {record['best_epoch']}, selected on "
              f"validation ({'accuracy, then loss' if t['select'] == 'acc_loss' else 'loss'})")
    lines += ["", "## Model and training", "", _model_line(cfg, record),
              f"- {chosen}; batch {t['batch_size']}, lr {t['lr']}; "
              f"{record['seconds_per_epoch']} s per epoch on {record['device']} with {record['threads']} thread(s).",
              "", "## Metrics", "",
              *_metrics_table([("validation", record.get("val_metrics") or {}), ("test", record["test"])]), "",
              "Calibration: `ece` is the top-label expected calibration error (15 equal-width bins), `nll` the "
              "negative log-likelihood; both on the same cases. `fidelity_top1` is agreement with the teacher's "
              "class on full series.", "",
              "## Teacher", ""]
    if student and teacher:
        tr = teacher.get("record") or {}
        lines += [f"- Run `{teacher.get('path')}` ({teacher.get('arch')}, id {teacher.get('id')}), trained on the "
                  "full series of the same data.",
                  "- Its test metrics: " + ", ".join(f"{c} {_fmt((tr.get('test') or {}).get(c))}"
                                                     for c in COLUMNS[:4]) + "."]
        if teacher.get("lead"):
            lines.append(f"- An ensemble: logit methods distil its mean probabilities, feature methods the features of "
                         f"its lead member `{teacher['lead']}` (best cross-validation score).")
    else:
        lines.append("- This run is a teacher, trained on full series; students distilled from it name it here.")
    lines += _intended_use(record["dataset"], f"from their first {e:.0%}, as an early classifier" if student
                           else "from whole series")
    return "\n".join(lines) + "\n"


def anytime_card(cfg: dict, record: dict) -> str:
    """The card of an `earlykd early` run: one student for every checkpoint, and its stopping policies."""
    t, levels = cfg["train"], record["earliness"]
    cal = record["calibration"]
    on = (f"{cal['folds']}-fold out-of-fold predictions of the pooled training and validation cases"
          if cal["on"] == "out-of-fold" else "the validation split")
    default = record.get("default_policy", next(iter(record["policies_val"])))   # older runs: the first
    by = record.get("default_policy_by", "the first named")
    lines = _opening(cfg, record) + [
        "## Earliness", "",
        f"- One student for {len(levels)} checkpoints, earliness {levels[0]} to {levels[-1]}, prefix mode "
        f"`{record['prefix_mode']}`; at checkpoint e it sees only the first e of each series.",
        f"- Stopping policies, calibrated on {on} ({cal['cases']} cases); `decide.json` holds them. Each decides "
        f"when a series has been seen long enough. The default is `{default}` ({by}).", "",
        "## Model and training", "", _model_line(cfg, record),
        f"- {record['epochs']} epochs of {t['epochs']} (batch {t['batch_size']}, lr {t['lr']}), sampling "
        f"`{record['sampling']}`; {record['seconds_per_epoch']} s per epoch on {record['device']} with "
        f"{record['threads']} thread(s). Teacher: {record['teacher_arch']} (id {record['teacher_id']})"
        + (f"; feature methods distil its lead member `{record['teacher_lead']}`" if record.get("teacher_lead") else "")
        + ".", "",
        "## Decisions", "",
        "| policy | HM validation | HM validation, cross-validated | HM test | accuracy test | earliness test |",
        "|---|---|---|---|---|---|"]
    for name, val in record["policies_val"].items():
        test = record["test_policies"].get(name, {})
        lines.append(f"| {name} | {_fmt(val.get('hm'))} | {_fmt(val.get('cv_hm'))} | {_fmt(test.get('hm'))} | "
                     f"{_fmt(test.get('accuracy'))} | {_fmt(test.get('earliness'))} |")
    lines += ["", "HM is the harmonic mean of accuracy and 1 − earliness (aeon's `score`). The cross-validated HM "
              "decides each validation fold with the policy calibrated on the others. The test split scored "
              "the policies once; it chose nothing.", "", "## Metrics at every checkpoint (mean over checkpoints)",
              "", *_metrics_table([("test", record["test"])])]
    lines += _intended_use(record["dataset"], "as a stream arrives, deciding when to classify with a policy above")
    return "\n".join(lines) + "\n"
