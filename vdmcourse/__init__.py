"""vdmcourse: the companion package of the video diffusion course.

Sub-packages are imported on demand (``from vdmcourse.data import ...``) so that
``import vdmcourse`` stays fast.
"""

from vdmcourse.course import budget, is_quick, pick_device, seed_everything

__version__ = "0.1.0"
__all__ = ["budget", "is_quick", "pick_device", "seed_everything", "__version__"]
