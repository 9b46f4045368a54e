"""Teachers as objects: one trained run, or an ensemble of runs stored as one teacher.

A teacher gives its full-series outputs for every split (computed once and cached in its run
directory), an id and an architecture. An ensemble's logits are the log of its members' mean
probabilities, so logit methods (KD and its kin) distil the mean probabilities; feature methods
use the feature and hidden sequence of its lead member, the member with the best selection score
(cross-validated accuracy, then loss). See docs/protocol.md, "Selection". Training a teacher, single or
ensemble, is `teacher_training.train_teacher`.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from .data import Prepared
from .distill import TeacherOutputs
from .errors import check
from .models import ModelOutput
from .rundir import MODEL_FILE, RUN_FILE, file_digest, read_run
from .train import load_model
from .train.checkpoint import load_tensors, save_tensors

SPLITS = ("train", "val", "test")
CV_FILE = "cv.json"
OOF_FILE = "oof_logits.safetensors"   # per case of train + val: logits of the CV fold that held it out


class EnsembleModel(nn.Module):
    """Members' mean probabilities as logits (log of the mean); feature and hidden of the lead (first)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.forward_members(x)[0]

    def forward_members(self, x: torch.Tensor) -> tuple[ModelOutput, torch.Tensor]:
        """The combined output and each member's logits, (batch, members, classes)."""
        outs = [m(x) for m in self.members]
        log_probs = torch.stack([torch.log_softmax(o.logits, 1) for o in outs])
        logits = torch.logsumexp(log_probs, 0) - math.log(len(outs))
        return ModelOutput(logits, outs[0].feature, outs[0].hidden), torch.stack([o.logits for o in outs], 1)


def load_run_model(run_dir: Path) -> tuple[nn.Module, dict, dict]:
    """(model, meta, tensors) of a run directory; an ensemble teacher gives an EnsembleModel with the
    lead member's meta and training statistics."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / RUN_FILE).read_text()) if (run_dir / RUN_FILE).is_file() else {}
    if not record.get("members"):
        return load_model(run_dir / MODEL_FILE)
    loaded = [load_model(run_dir / m / MODEL_FILE) for m in record["members"]]
    return EnsembleModel([m for m, _, _ in loaded]).eval(), loaded[0][1], loaded[0][2]


@dataclass
class Teacher:
    """A finished teacher run directory, single or ensemble."""
    path: Path
    cfg: dict
    record: dict

    @classmethod
    def load(cls, path: str | Path) -> "Teacher":
        cfg, record = read_run(path)
        check(record.get("kind") == "teacher", f"{path}: is a run of kind '{record.get('kind')}', not a teacher")
        return cls(Path(path).resolve(), cfg, record)

    @property
    def model_files(self) -> list[Path]:
        return [self.path / m / MODEL_FILE for m in self.record.get("members") or ["."]]

    @property
    def arch(self) -> str:
        return self.record["student_arch"]

    @property
    def model_cfg(self) -> dict:
        """The resolved model settings of the (lead) member: a student's default architecture."""
        members = self.record.get("members")
        return read_run(self.path / members[0])[0]["model"] if members else self.cfg["model"]

    @cached_property
    def id(self) -> str:
        digest = "".join(file_digest(f) for f in self.model_files)
        if len(self.model_files) > 1:
            digest = hashlib.sha256(digest.encode()).hexdigest()
        return f"{self.record['config_hash']}-{digest[:8]}"

    def model(self) -> tuple[nn.Module, dict, dict]:
        return load_run_model(self.path)

    def head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the (lead member's) linear head: what the teacher's feature is scored by."""
        model = load_model(self.model_files[0])[0]
        check(isinstance(getattr(model, "head", None), nn.Linear), f"{self.path}: the teacher has no linear head")
        return model.head.weight.detach(), model.head.bias.detach()

    def check_data(self, data: Prepared) -> None:
        _, meta, _ = load_model(self.model_files[0])
        check(meta.get("data_fingerprint") == data.fingerprint(),
              f"{self.path}: the teacher was trained on different data than {data.name} now gives")

    def outputs(self, data: Prepared, device: torch.device) -> dict[str, TeacherOutputs]:
        """Logits, features, hidden sequences and members' logits on the full series of every split,
        cached per (checkpoints, data) in the run directory. A single teacher stores no member logits (its
        logits are its one member's); an ensemble's cache written before they existed gains them."""
        key = f"{self.id.split('-')[-1]}-{data.fingerprint()}"
        cache = self.path / f"teacher_outputs-{key}.safetensors"
        ensemble = bool(self.record.get("members"))
        tensors = load_tensors(cache)[0] if cache.is_file() else {}
        if not tensors or (ensemble and "train.member_logits" not in tensors):
            model = self.model()[0].to(device).eval()
            fields = ("logits", "feature", "hidden") if not tensors else ()
            fields += ("member_logits",) if ensemble else ()
            with torch.no_grad():
                for split in SPLITS:
                    x = data.view(split)
                    outs = [_forward(model, x[i:i + 256].to(device), ensemble) for i in range(0, len(x), 256)]
                    for field in fields:
                        parts = [o[field].cpu() for o in outs]
                        tensors[f"{split}.{field}"] = torch.cat(parts) if parts else torch.zeros(0)
            try:
                save_tensors(cache, tensors, {"teacher": str(self.path), "data": data.fingerprint()})
            except OSError:
                pass  # a read-only teacher directory only costs recomputation
        oof = self.out_of_fold(data)
        return {s: TeacherOutputs(tensors[f"{s}.logits"], tensors[f"{s}.feature"], tensors[f"{s}.hidden"],
                                  tensors.get(f"{s}.member_logits", tensors[f"{s}.logits"].unsqueeze(1)),
                                  None if oof is None else oof.get(s))
                for s in SPLITS}

    def out_of_fold(self, data: Prepared) -> dict[str, torch.Tensor] | None:
        """{"train", "val"}: (cases, members, classes) each member's logits from its cross-validation fold that held
        the case out (members in the order of `member_logits`); None unless every member kept them (teachers
        trained with select cv since they are written; benchmarks/teacher_oof.py adds them to older ones)."""
        found = []
        for model_file in self.model_files:
            path = model_file.parent / OOF_FILE
            if not path.is_file():
                return None
            tensors, meta = load_tensors(path)
            if meta.get("data") != data.fingerprint():
                return None
            found.append(tensors["logits"])
        n = len(data.labels["train"])
        stacked = torch.stack(found, 1)
        return {"train": stacked[:n], "val": stacked[n:]}

    def check_options(self, method: str, options: dict, data: Prepared) -> None:
        """What a method's resolved options need of this teacher, before any run directory is made."""
        from .distill.base import NO_OOF
        check(not options.get("oof") or self.out_of_fold(data) is not None, f"{method}: {NO_OOF}")

    def info(self, data: Prepared, device: torch.device) -> dict:
        """What a student's record and fidelity metrics need of its teacher."""
        return {"arch": self.arch, "id": self.id, "test_logits": self.outputs(data, device)["test"].logits,
                "path": str(self.path), "record": self.record, "lead": self.lead}

    @property
    def lead(self) -> str | None:
        """An ensemble's lead member (best CV score): whose features and hidden sequence feature methods distil."""
        members = self.record.get("members")
        return members[0] if members else None


def _forward(model: nn.Module, x: torch.Tensor, ensemble: bool) -> dict[str, torch.Tensor]:
    out, members = model.forward_members(x) if ensemble else (model(x), None)
    return {"logits": out.logits, "feature": out.feature, "hidden": out.hidden, "member_logits": members}


def teacher_outputs(teacher_dir: Path, data: Prepared, device: torch.device) -> dict[str, TeacherOutputs]:
    return Teacher.load(teacher_dir).outputs(data, device)
