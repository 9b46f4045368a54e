"""A one-page model card (model_card.md) written into every run directory."""
from __future__ import annotations

COLUMNS = ("auc_prc", "accuracy", "nll", "ece", "fidelity_top1")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _metrics_table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = ["| split | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    return lines + [f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in COLUMNS) + " |" for name, m in rows if m]


def model_card(cfg: dict, record: dict, teacher: dict | None) -> str:
    d, p, t, info = cfg["data"], cfg["prefix"], cfg["train"], record["data"]
    student = record["kind"] == "student"
    e = p["earliness"]
    options = cfg["method"]["options"] or {}
    lines = [f"# Model card: {record['kind']} {record['dataset']} ({record['student_arch']})", "",
             f"earlykd {record['version']}, torch {record['versions']['torch']}; seed {record['seed']}; config hash "
             f"{record['config_hash']}. The full settings are in `config.yaml`, the record in `run.json`.", "",
             "## Data", "",
             f"- Source: {info.get('source')} (`data.name`: {d['name']}"
             + (f", test file {d['test_path']}" if d.get("test_path") else "") + ").",
             f"- Splits: {info.get('train')} training, {info.get('val')} validation (stratified "
             f"{d['val_fraction']:.0%} of the training cases, split seed {d['split_seed']}), {info.get('test')} test "
             "cases; the test split is used only for the metrics below.",
             f"- Every series resampled to {d['length']} steps and standardised with statistics of the training "
             "split only.", "",
             "## Earliness", ""]
    if student:
        lines.append(f"- The model sees the first {e:.0%} of each series (earliness {e}), prefix mode `{p['mode']}`"
                     + (f", channels {p['channels']}" if p.get("channels") else "") + ".")
    else:
        lines.append("- A teacher: it sees the full series (earliness 1.0).")
    lines += ["", "## Model and training", "",
              f"- {record['student_arch']}, {cfg['model']['layers']} layers, width {cfg['model']['hidden']}; method "
              f"`{record['method']}`" + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "")
              + ".",
              f"- {record['epochs']} epochs of {t['epochs']} (batch {t['batch_size']}, lr {t['lr']}); checkpoint of "
              f"epoch {record['best_epoch']}, selected on validation "
              f"({'accuracy, then loss' if t['select'] == 'acc_loss' else 'loss'}); "
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
    else:
        lines.append("- This run is a teacher, trained on full series; students distilled from it name it here.")
    lines += ["", "## Intended use", "",
              f"- Classifying series of the same source and preparation as {record['dataset']}, "
              + (f"from their first {e:.0%}, as an early classifier." if student else "from whole series."),
              "- A research artefact: one seed on one machine. Numbers move across seeds and machines "
              "(see the README on reproducibility); compare methods over several seeds.",
              "- Not validated on other data, sensors or sampling rates; check `earlykd evaluate RUN --test-path "
              "FILE` on labelled data of the intended use first."]
    return "\n".join(lines) + "\n"
