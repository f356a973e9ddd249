"""Quality metrics for the procedural-data models: an attribute classifier, FID in its feature space, prompt accuracy,
precision/recall and density/coverage, and evaluate() that runs them all on a generator."""

from scott.eval.classifier import AttributeClassifier, ClassifierConfig, load_classifier
from scott.eval.diversity import prdc
from scott.eval.evaluate import GenerateFn, evaluate, feature_metrics, real_images
from scott.eval.fid import fid, frechet_distance
from scott.eval.prompt_accuracy import prompt_accuracy
from scott.eval.prompts import eval_prompts, partial_prompts
from scott.eval.spread import format_spread, mean_std, spread

__all__ = [
    "AttributeClassifier",
    "ClassifierConfig",
    "GenerateFn",
    "eval_prompts",
    "evaluate",
    "feature_metrics",
    "fid",
    "format_spread",
    "frechet_distance",
    "load_classifier",
    "mean_std",
    "partial_prompts",
    "prdc",
    "prompt_accuracy",
    "real_images",
    "spread",
]
