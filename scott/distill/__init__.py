"""SCott distillation: a consistency-distilled student from any SD-layout teacher (arXiv 2403.01505).

Entry points: `distill(load_config(path, **overrides))`, or `python -m scott.distill` (also under
`accelerate launch`).
"""

from scott.distill.config import DistillConfig, load_config
from scott.distill.trainer import DistillResult, distill

__all__ = ["DistillConfig", "DistillResult", "distill", "load_config"]
