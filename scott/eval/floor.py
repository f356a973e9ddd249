"""The real-vs-real floor of the feature metrics: what a perfect generator scores at a given sample count.

`python -m scott.eval.floor` prints FID / precision / recall / density / coverage between two disjoint sets of
real images of the same held-out prompts, mean ± std over repeats, for several sample counts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from scott.eval.classifier import AttributeClassifier, load_classifier
from scott.eval.evaluate import feature_metrics, real_images, to_classifier_input
from scott.eval.fid import fid
from scott.eval.prompts import eval_prompts
from scott.eval.spread import format_spread, spread


def real_vs_real(
    classifier: AttributeClassifier, prompts: Sequence[str], n_per_prompt: int, repeat: int = 0, k: int = 5
) -> dict[str, float]:
    """Feature metrics between two disjoint real sets of each prompt: indices [2rn, 2rn + n) and [2rn + n, 2rn + 2n)."""
    size = classifier.config.image_size
    start = 2 * repeat * n_per_prompt
    x_a = to_classifier_input(real_images(prompts, n_per_prompt, start), size)
    x_b = to_classifier_input(real_images(prompts, n_per_prompt, start + n_per_prompt), size)
    (_, a), (_, b) = classifier.predict(x_a), classifier.predict(x_b)
    out = feature_metrics(a.numpy(), b.numpy(), k, n_per_prompt)
    out["fd_low"] = fid(classifier.low_level_features(x_a).numpy(), classifier.low_level_features(x_b).numpy())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classifier", default=None, help="classifier folder (default: models/classifier)")
    parser.add_argument("--prompts", type=int, default=100, help="held-out prompts per set")
    parser.add_argument("--counts", type=int, nargs="+", default=[500, 1000, 2000, 5000], help="images per set")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    classifier = load_classifier(args.classifier)
    prompts = eval_prompts(args.prompts)
    keys = ("fd_low", "fid", "precision", "recall", "density", "coverage")
    print("| images per set | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for count in args.counts:
        n = max(1, count // len(prompts))
        stats = spread(lambda r, n=n: real_vs_real(classifier, prompts, n, repeat=r), range(args.repeats))
        text = format_spread({k: stats[k] for k in keys})
        print(f"| {n * len(prompts)} | " + " | ".join(text[k] for k in keys) + " |", flush=True)


if __name__ == "__main__":
    main()
