"""Data for the course: MNIST digits (shipped subset, full IDX files, the official
Moving MNIST test file) and the parameterised Moving MNIST generator."""

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
]
