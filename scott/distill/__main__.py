"""`python -m scott.distill --teacher DIR --data SPEC --out DIR [--config FILE ...] [--eta 0.3 ...]`.

One flag per DistillConfig field, generated from the dataclass, so flags and config files never drift.
This entry exists for `accelerate launch -m scott.distill ...` (multi-GPU / multi-process runs);
`scott distill` on the main CLI calls the same `distill(load_config(...))`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from scott.distill.config import DistillConfig, load_config

_SKIP = {"extras"}


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scott.distill", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        type=Path,
        action="append",
        default=None,
        help="TOML file of config fields (configs/distill/*.toml); repeat to layer (a methods/ file over a scale file)",
    )
    hints = typing.get_type_hints(DistillConfig)
    for f in dataclasses.fields(DistillConfig):
        if f.name in _SKIP:
            continue
        hint = hints[f.name]
        kind = {int: int, float: float, bool: _parse_bool, str: str}.get(hint)
        if kind is None:
            kind = Path if "Path" in str(hint) else str
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        parser.add_argument(flag, dest=f.name, type=kind, default=None, help=f"default: {default}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    config = load_config(args.pop("config"), **args)
    from scott.distill.trainer import distill

    result = distill(config)
    summary = {"model_dir": str(result.model_dir), "steps": result.steps, "s_per_step": result.seconds_per_step}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
