"""The distillation variants of the quality benchmark and how each one is trained, skipped or resumed.

Every variant is the same `python -m scott.distill` run (same teacher, data, steps and batch) over the scale config:
one of the paper's methods (a configs/distill/methods/ file: LCM, CD with h ODE sub-steps, LCM + the adversarial
loss, SCott), or SCott with one knob of the ablation changed, at one training seed. Each runs in its own folder under
--work:

    <work>/<name>/model/                the student (diffusers folder)
    <work>/<name>/train/                the distiller's checkpoints, latent cache and log.jsonl
    <work>/<name>/variant.json          what this folder was trained for, and whether it is complete

A complete folder at the requested steps is skipped; an incomplete one is handed to the distiller again,
which resumes from its newest checkpoint by itself; a complete one is extended when --budget-steps grows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scott.atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]

# Config fields that change how a run is carried out, not what it trains: a folder may be resumed under new values.
_BOOKKEEPING = {"steps", "cpu_threads", "progress", "checkpoint_every", "log_every", "resume", "extras"}
# The ablated knobs: the flag suffix, the DistillConfig field, the symbol in tables.
KNOBS = {"eta": ("eta", "η"), "h": ("substeps", "h"), "adv": ("adv_weight", "λ_adv"), "ref": ("eta_reference", "η on")}
METHODS_DIR = ROOT / "configs" / "distill" / "methods"
METHOD_LABELS = {
    "lcm": "LCM (CD, 1 ODE step)",
    "cd": "CD, h ODE sub-steps",
    "adversarial": "LCM + adversarial loss",
    "scott": "SCott",
}


class FolderMismatch(RuntimeError):
    """A variant folder holds a run that this invocation must not reuse or extend."""


@dataclass(frozen=True)
class Variant:
    name: str  # folder name and --only id: <group>-seed<seed>
    label: str  # row label in the tables
    overrides: dict[str, Any] = field(default_factory=dict)  # DistillConfig fields changed from the base, seed included
    group: str = ""  # the arm, over training seeds: a method name or an ablation point ("scott-eta0.6")
    seed: int = 0  # the training seed


def method_overrides(method: str) -> dict[str, Any]:
    """The DistillConfig fields of a configs/distill/methods/ file."""
    from scott.distill.config import read_config_file

    path = METHODS_DIR / f"{method}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in METHODS_DIR.glob("*.toml")))
        raise ValueError(f"no method {method!r}; known: {known}")
    return read_config_file(path)


def build_variants(
    base: dict[str, Any], methods: list[str], seeds: list[int], ablation: dict[str, list[Any]]
) -> list[Variant]:
    """Each method, then each ablation point on SCott, at every training seed (seed-major: every arm's first seed
    trains before any second seed); a variant whose config equals an earlier one is dropped."""
    arms: list[tuple[str, str, dict[str, Any]]] = [(m, METHOD_LABELS.get(m, m), method_overrides(m)) for m in methods]
    scott = method_overrides("scott")
    for knob, values in ablation.items():
        field_name, symbol = KNOBS[knob]
        for value in values:
            if field_name == "substeps":
                value = int(value)
            elif field_name != "eta_reference":
                value = float(value)
            shown = f"{value:g}" if isinstance(value, float | int) else str(value)
            arms.append((f"scott-{knob}{shown}", f"SCott {symbol}={shown}", {**scott, field_name: value}))
    seen: set[str] = set()
    variants = []
    for seed in seeds:
        for group, label, overrides in arms:
            key = json.dumps({**base, **overrides, "seed": seed}, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                variants.append(Variant(f"{group}-seed{seed}", label, {**overrides, "seed": seed}, group, seed))
    return variants


def knob_values(base: dict[str, Any], variant: Variant) -> dict[str, Any]:
    """{'eta': ..., 'h': ..., 'adv': ...} of a variant (its effective config)."""
    config = {**base, **variant.overrides}
    return {knob: config.get(f) for knob, (f, _) in KNOBS.items()}


def dir_stamp(path: Path) -> str:
    """A short digest of every file's name, size and mtime under `path`: changes when the weights are rewritten."""
    entries = sorted(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()
    )
    return hashlib.sha1(json.dumps(entries).encode()).hexdigest()[:16]


@dataclass
class DistillRun:
    """What every variant shares: the teacher, the data, the base config (budget included), the work folder."""

    teacher: Path
    data: str
    work: Path
    base: dict[str, Any]  # DistillConfig fields: the base config file + shared options + steps/seed/threads
    progress: bool = True

    def folder(self, variant: Variant) -> Path:
        return self.work / variant.name

    def config(self, variant: Variant) -> dict[str, Any]:
        return {**self.base, **variant.overrides, "progress": self.progress}

    def identity(self, variant: Variant) -> dict[str, Any]:
        """What a folder was trained for, bookkeeping left out: a folder is only reused for the same identity."""
        config = {k: v for k, v in self.config(variant).items() if k not in _BOOKKEEPING}
        teacher = self.teacher.resolve()
        return {"teacher": str(teacher), "teacher_stamp": dir_stamp(teacher), "data": self.data, "config": config}


@dataclass
class VariantResult:
    variant: Variant
    model_dir: Path
    status: str  # "skipped" (already complete) or "trained"
    steps: int
    seconds_per_step: float  # mean over every logged step of the run, resumed parts included
    distill_seconds: float


def read_marker(folder: Path) -> dict[str, Any] | None:
    path = folder / "variant.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _write_marker(folder: Path, marker: dict[str, Any]) -> None:
    write_json_atomic(folder / "variant.json", marker)


def _newest_checkpoint(train: Path) -> int:
    steps = [int(p.parent.name.split("-", 1)[1]) for p in (train / "checkpoints").glob("step-*/done.json")]
    return max(steps, default=0)


def _step_times(train: Path) -> list[float]:
    log = train / "log.jsonl"
    if not log.is_file():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [float(r["seconds"]) for r in rows if "step" in r and "seconds" in r]


def check_folder(run: DistillRun, variant: Variant) -> str:
    """'complete', 'extend' or 'run'; raises if the folder was made for another run or for more steps."""
    folder, steps = run.folder(variant), int(run.base["steps"])
    marker = read_marker(folder)
    if marker is not None and marker["identity"] != run.identity(variant):
        raise FolderMismatch(
            f"{folder} was trained for another configuration (teacher, data or config differ; see its variant.json); "
            "delete it or pass another --work"
        )
    trained = max(_newest_checkpoint(folder / "train"), marker["steps"] if marker and marker["complete"] else 0)
    if trained > steps:
        raise FolderMismatch(f"{folder} holds {trained} steps, more than the {steps} asked for; use another --work")
    if marker is not None and marker["complete"] and marker["steps"] == steps:
        return "complete"
    return "extend" if trained else "run"


def _share_latent_cache(work: Path, train: Path) -> None:
    """Hard-link (or copy) the latent cache another variant already encoded: the cache file name is keyed by the
    teacher, the data and the resolution, all shared, so the distiller finds it and skips a VAE pass over the data."""
    target = train / "cache"
    if any(target.glob("*.pt")):
        return
    for donor in sorted(work.glob("*/train/cache/*.pt")):
        target.mkdir(parents=True, exist_ok=True)
        dest = target / donor.name
        if not dest.exists():
            try:
                os.link(donor, dest)
            except OSError:
                shutil.copy2(donor, dest)


def distill_variant(run: DistillRun, variant: Variant, log_to_file: bool = False) -> VariantResult:
    """Train (or resume, or skip) one variant; the distiller runs as a subprocess, as the recipe runs it.

    log_to_file: the distiller's output goes to <folder>/distill.log, without a progress bar (for runs side by side).
    """
    folder = run.folder(variant)
    model, train = folder / "model", folder / "train"
    state = check_folder(run, variant)
    if state != "complete":
        folder.mkdir(parents=True, exist_ok=True)
        _write_marker(folder, {"identity": run.identity(variant), "steps": run.base["steps"], "complete": False})
        config = {**run.config(variant), "progress": run.progress and not log_to_file}
        _share_latent_cache(run.work, train)
        command = [
            sys.executable, "-m", "scott.distill", "--teacher", str(run.teacher), "--data", run.data,
            "--out", str(model), "--work-dir", str(train),
        ]  # fmt: skip
        # Every other DistillConfig field as its flag (the paths above are the run's, not the base file's).
        fields = {k: v for k, v in config.items() if k not in ("teacher", "data", "out", "work_dir")}
        command += [arg for name, value in fields.items() for arg in (f"--{name.replace('_', '-')}", str(value))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        threads = int(run.base.get("cpu_threads") or 0)
        if threads > 0:
            env.setdefault("OMP_NUM_THREADS", str(threads))
        print(f"[quality] distill {variant.name} ({state}): {' '.join(command)}", flush=True)
        if log_to_file:
            with (folder / "distill.log").open("a") as log:
                subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        else:
            subprocess.run(command, check=True, cwd=ROOT, env=env)
        summary = json.loads((train / "rank-0.json").read_text())
        if not (model / "model_index.json").is_file() or summary["steps"] != run.base["steps"]:
            raise RuntimeError(f"scott.distill finished without a {run.base['steps']}-step model in {model}")
        _write_marker(folder, {"identity": run.identity(variant), "steps": run.base["steps"], "complete": True})
    else:
        print(f"[quality] distill {variant.name}: complete at {run.base['steps']} steps, skipping", flush=True)
    times = _step_times(train)
    return VariantResult(
        variant=variant,
        model_dir=model,
        status="skipped" if state == "complete" else "trained",
        steps=int(run.base["steps"]),
        seconds_per_step=sum(times) / len(times) if times else float("nan"),
        distill_seconds=sum(times),
    )
