"""Teachers of a sweep against the protocol's reference figures: the stored teacher (single or ensemble), each
member with its cross-validated epochs and score, and for a best-of teacher the candidates it was chosen from.

Usage: python benchmarks/teacher_table.py DIR   (reads DIR/runs/teacher-*/run.json; writes DIR/teachers.md)
"""
import json
import statistics
import sys
from pathlib import Path

# docs/protocol.md: a bare FCN loop, 100 epochs, batch 16 (test AUC-PRC on the full series)
REFERENCE = {"GunPoint": 1.000, "ArrowHead": 0.906, "ItalyPowerDemand": 0.965, "OSULeaf": 0.969,
             "JapaneseVowels": 0.999, "ACSF1": 0.813}


def main() -> None:
    root = Path(sys.argv[1])
    lines = ["| dataset | reference | teacher | at or above | members (AUC-PRC) | members' CV epochs | "
             "members' CV accuracy |", "|---|---|---|---|---|---|---|"]
    met = judged = 0
    dirs = sorted((root / "runs").glob("teacher-*"))
    if not dirs:   # e.g. a clone: runs/ is not committed; keep the committed table
        print(f"teacher_table: no teacher runs under {root / 'runs'}; {root / 'teachers.md'} left as it is",
              file=sys.stderr)
        sys.exit(2)
    for path in dirs:
        record = json.loads((path / "run.json").read_text())
        name, score = record["dataset"], record["test"]["auc_prc"]
        members = [json.loads((path / m / "run.json").read_text()) for m in record.get("members") or []]
        ref = REFERENCE.get(name)
        ok = None if ref is None else round(score, 3) >= ref
        met += bool(ok)
        judged += ok is not None
        scores = ", ".join(f"{m['test']['auc_prc']:.3f}" for m in members) or "-"
        epochs = ", ".join(str(m["cv"]["epochs"]) for m in members if m.get("cv")) or "-"
        accs = ", ".join(f"{m['cv']['acc']:.3f}" for m in members if m.get("cv")) or "-"
        spread = f" (mean {statistics.fmean(m['test']['auc_prc'] for m in members):.3f})" if len(members) > 1 else ""
        verdict = "-" if ok is None else "yes" if ok else "no"
        lines.append(f"| {name} | {ref if ref is not None else '-'} | {score:.4f} | {verdict} | "
                     f"{scores}{spread} | {epochs} | {accs} |")
        for c in record.get("candidates") or []:
            if record.get("combine") == "best":
                lines.append(f"| ↳ candidate {c['arch']} (seed {c['seed']}) | | | | | | CV accuracy "
                             f"{c['selection']['acc']:.3f}, loss {c['selection']['loss']:.3f} |")
    unjudged = f"; {len(dirs) - judged} without one in the protocol" if judged < len(dirs) else ""
    lines += ["", f"{met} of {judged} teachers at or above their reference figure (compared at 3 decimals){unjudged}."]
    (root / "teachers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
