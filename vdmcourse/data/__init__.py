"""Data for the course: MNIST digits (shipped subset, full IDX files, the official
Moving MNIST test file), the parameterised Moving MNIST generator and the
data-curation helpers (motion score, static-clip filter, frame-stride resampling,
duplicate finder)."""

from vdmcourse.data.mnist import (
    download_file,
    download_mnist,
    load_mnist,
    load_mnist_subset,
    load_moving_mnist_test,
    read_idx,
)
from vdmcourse.data.moving_mnist import (
    Clips,
    MovingMNIST,
    MovingMNISTConfig,
    digit_pool,
    generate_clips,
    render_clips,
    simulate_trajectories,
    velocities_from_positions,
)
from vdmcourse.data.curation import (
    StaticClipFilter,
    StridedMovingMNIST,
    find_duplicates,
    frame_difference,
    motion_score,
    nearest_neighbours,
    shift_tolerant_distance,
    stride_clips,
)

__all__ = [
    "Clips",
    "MovingMNIST",
    "MovingMNISTConfig",
    "digit_pool",
    "generate_clips",
    "render_clips",
    "simulate_trajectories",
    "velocities_from_positions",
    "download_file",
    "download_mnist",
    "load_mnist",
    "load_mnist_subset",
    "load_moving_mnist_test",
    "read_idx",
    "StaticClipFilter",
    "StridedMovingMNIST",
    "find_duplicates",
    "frame_difference",
    "motion_score",
    "nearest_neighbours",
    "shift_tolerant_distance",
    "stride_clips",
]
