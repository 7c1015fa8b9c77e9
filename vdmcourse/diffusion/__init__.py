"""The diffusion core: noise schedules, training objectives and their conversions,
samplers, and classifier-free guidance.

Conventions: time ``t`` in ``[0, 1]`` with ``t = 1`` pure noise (discrete step ``i``
of ``N`` is ``t = i / N``); flow matching uses ``x_t = (1 - t) x0 + t eps`` with
velocity target ``eps - x0``; samples live in ``[-1, 1]``; videos are ``(B, T, C, H, W)``.
"""

from vdmcourse.diffusion.context import (
    CONTEXT_MASKS,
    FORCING_SCHEDULES,
    ContextConfig,
    context_mask,
    forcing_times,
    frame_times,
    masked_training_loss,
    random_context_masks,
    random_context_times,
    sample_forcing,
    sample_with_context,
)
from vdmcourse.diffusion.guidance import NULL_LABEL, classifier_free_guidance, guided_output, null_label_of
from vdmcourse.diffusion.objectives import (
    OBJECTIVES,
    TIME_DISTRIBUTIONS,
    check_frame_t_share,
    check_motion_weight,
    convert,
    frame_noise,
    model_target,
    noise_mix_of,
    predict_x0_eps,
    resolve_schedule,
    sample_timesteps,
    training_loss,
)
from vdmcourse.diffusion.samplers import ALL_SAMPLERS, GUIDE_EVERY_CALL, SAMPLERS, check_guidance_interval, model_evaluations, sample
from vdmcourse.diffusion.schedules import (
    FlowSchedule,
    Schedule,
    VPSchedule,
    cosine_schedule,
    linear_schedule,
)

__all__ = [
    "NULL_LABEL",
    "classifier_free_guidance",
    "guided_output",
    "null_label_of",
    "OBJECTIVES",
    "TIME_DISTRIBUTIONS",
    "check_frame_t_share",
    "check_motion_weight",
    "convert",
    "frame_noise",
    "model_target",
    "noise_mix_of",
    "predict_x0_eps",
    "resolve_schedule",
    "sample_timesteps",
    "training_loss",
    "SAMPLERS",
    "ALL_SAMPLERS",
    "GUIDE_EVERY_CALL",
    "check_guidance_interval",
    "model_evaluations",
    "sample",
    "FlowSchedule",
    "Schedule",
    "VPSchedule",
    "cosine_schedule",
    "linear_schedule",
    "CONTEXT_MASKS",
    "ContextConfig",
    "context_mask",
    "frame_times",
    "masked_training_loss",
    "random_context_masks",
    "random_context_times",
    "sample_with_context",
    "FORCING_SCHEDULES",
    "forcing_times",
    "sample_forcing",
]
