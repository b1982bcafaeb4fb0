"""Two hands with an object: procedural object library, exact object SDF, hand-object metrics, MuJoCo stability
test and the synthetic bimanual grasp set (docs/objects.md).

Submodules are imported on demand (``mujoco`` is optional): :mod:`~interhandgen.objects.library`,
:mod:`~interhandgen.objects.sdf`, :mod:`~interhandgen.objects.metrics`, :mod:`~interhandgen.objects.physics`,
:mod:`~interhandgen.objects.grasps`, :mod:`~interhandgen.objects.dataset`.
"""
