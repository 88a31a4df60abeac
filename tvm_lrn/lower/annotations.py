"""Loop annotations that schedules leave for the project's lowering passes.

A module of its own, importing nothing, so that schedule rules and lowering passes can
both name them without importing each other.
"""

#: Annotation of the CPU plane schedule's task loop: ``[ahead_in, ahead_out]``, the
#: prefetch distances in elements of the input and the output (0: none); see
#: :mod:`tvm_lrn.lower.plane_tasks`. A schedule primitive, so every trace of the
#: schedule (a tuning record included) carries it.
PLANE_TASK = "tvm_lrn.plane_task"
