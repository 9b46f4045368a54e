"""The result schema, declared once: the results store's table, the CSV columns (docs/protocol.md's first,
in their order) and the report's tables derive from it. A new metric is one line here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    kind: type                 # int, float or str (JSON text for mappings)
    protocol: bool = False     # one of docs/protocol.md's CSV columns
    required: bool = True      # a complete row fills it
    metric: bool = False       # a test metric (evaluate.classification_metrics)
    student_only: bool = False  # teachers leave it empty (fidelity)


SCHEMA = (
    Column("dataset", str, protocol=True),
    Column("method", str, protocol=True),
    Column("earliness", float, protocol=True),
    Column("prefix_mode", str, protocol=True),
    Column("seed", int, protocol=True),
    Column("teacher_arch", str, protocol=True),
    Column("student_arch", str, protocol=True),
    Column("auc_prc", float, protocol=True, metric=True),
    Column("average_precision", float, protocol=True, metric=True),
    Column("accuracy", float, protocol=True, metric=True),
    Column("roc_auc", float, protocol=True, metric=True),
    Column("nll", float, protocol=True, metric=True),
    Column("ece", float, protocol=True, metric=True),
    Column("fidelity_top1", float, protocol=True, metric=True, student_only=True),
    Column("fidelity_kl", float, protocol=True, metric=True, student_only=True),
    Column("epochs", int, protocol=True),
    Column("train_seconds", float, protocol=True),
    Column("seconds_per_epoch", float, protocol=True),
    Column("peak_memory_mb", float, protocol=True),
    Column("config_hash", str, protocol=True),
    Column("version", str, protocol=True),
    Column("teacher_id", str, required=False),
    Column("best_epoch", int, required=False),
    Column("warmup", int, required=False),
    Column("val_loss", float, required=False),
    Column("val_acc", float, required=False),
    Column("options", str),
    Column("selected", str, required=False),
    Column("suite", str, required=False),
    Column("job_hash", str),
    Column("run_dir", str),
    Column("finished_at", str),
    Column("record", str),
)

COLUMNS = [c.name for c in SCHEMA]
PROTOCOL = [c.name for c in SCHEMA if c.protocol]
METRICS = tuple(c.name for c in SCHEMA if c.metric)
INTEGER = {c.name for c in SCHEMA if c.kind is int}
REAL = {c.name for c in SCHEMA if c.kind is float}
OPTIONAL = {c.name for c in SCHEMA if not c.required}
STUDENT_ONLY = {c.name for c in SCHEMA if c.student_only}
KEY = ("dataset", "method", "earliness", "prefix_mode", "seed", "job_hash")  # one run of a sweep
