"""interhandgen: two-hand interaction generation by cascaded reverse diffusion (InterHandGen, CVPR 2024).

Units are metres inside the library; reports use cm^3 and mm. See docs/conventions.md.
"""

__version__ = "0.1.0"
