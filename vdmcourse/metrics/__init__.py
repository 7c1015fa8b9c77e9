"""Evaluating video models honestly, offline, on a CPU.

* :mod:`~vdmcourse.metrics.features` -- the course's own evaluation network (video
  encoder + per-frame digit classifier), trained on Moving MNIST ground truth;
* :mod:`~vdmcourse.metrics.distances` -- Fréchet distance and KID between feature
  sets, with bootstrap intervals and the sample size stated (not FVD);
* :mod:`~vdmcourse.metrics.temporal` -- flicker, identity persistence, dynamic degree,
  ink-mass and digit-count stability;
* :mod:`~vdmcourse.metrics.physics` -- digit tracking, the bounce-law fit and its
  residual, the constant-velocity prediction baseline;
* :mod:`~vdmcourse.metrics.prediction` -- MSE (both conventions), PSNR, SSIM and the
  copy-last-frame baseline for frame prediction;
* :mod:`~vdmcourse.metrics.corruptions` -- the corruption ladder and Spearman's rho;
* :mod:`~vdmcourse.metrics.report` -- everything at once, as a table.
"""

from vdmcourse.metrics.corruptions import CORRUPTIONS, LEVELS, corrupt, reverse_clips, spearman
from vdmcourse.metrics.distances import (
    DistanceResult,
    bootstrap,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
    kid,
    kid_bootstrap,
    sqrtm_psd,
)
from vdmcourse.metrics.features import (
    Evaluator,
    EvaluatorConfig,
    crop_digits,
    evaluator_accuracy,
    evaluator_batch,
    evaluator_loss,
    load_evaluator,
    video_features,
)
from vdmcourse.metrics.physics import (
    BounceFit,
    PhysicsScores,
    Tracks,
    constant_velocity_prediction,
    fit_bounces,
    ink_centroid,
    physics_scores,
    track_digits,
)
from vdmcourse.metrics.prediction import copy_last_frame, frame_mse, prediction_scores, psnr, ssim
from vdmcourse.metrics.report import METRICS, SHOULD_RESPOND, clip_metrics, evaluate_videos, format_report
from vdmcourse.metrics.temporal import (
    count_blobs,
    digit_count_consistency,
    dynamic_degree,
    flicker,
    frame_classes,
    identity_left_out,
    identity_persistence,
    ink_mass_variation,
    shape_change,
)

__all__ = [
    "CORRUPTIONS",
    "LEVELS",
    "METRICS",
    "SHOULD_RESPOND",
    "BounceFit",
    "DistanceResult",
    "Evaluator",
    "EvaluatorConfig",
    "PhysicsScores",
    "Tracks",
    "bootstrap",
    "clip_metrics",
    "constant_velocity_prediction",
    "copy_last_frame",
    "corrupt",
    "count_blobs",
    "crop_digits",
    "digit_count_consistency",
    "dynamic_degree",
    "evaluate_videos",
    "evaluator_accuracy",
    "evaluator_batch",
    "evaluator_loss",
    "feature_statistics",
    "fit_bounces",
    "flicker",
    "format_report",
    "frame_mse",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "identity_persistence",
    "identity_left_out",
    "frame_classes",
    "ink_centroid",
    "ink_mass_variation",
    "shape_change",
    "kid",
    "kid_bootstrap",
    "load_evaluator",
    "physics_scores",
    "prediction_scores",
    "psnr",
    "reverse_clips",
    "spearman",
    "sqrtm_psd",
    "ssim",
    "track_digits",
    "video_features",
]
