"""Lowering passes of the project and the TIR pipeline that runs them.

:data:`TIR_PIPELINE` names TVM's default TIR pipeline with the project's passes spliced
in front of it (registered with :func:`tvm.tirx.register_tir_pipeline`). Build every
scheduled LRN PrimFunc with it, e.g. ``tvm.compile(func, target,
tir_pipeline=TIR_PIPELINE)``: a schedule, however it was made (a rule, a replayed
tuning record, TVM's ``MetaScheduleApplyDatabase``), then becomes the same kernel.
"""

from __future__ import annotations

import tvm

from .annotations import PLANE_TASK
from .one_core import SerializeOnOneCore, on_one_core, serialize_parallel_loops
from .param_alignment import AlignParamsToElements, align_params_to_elements
from .plane_tasks import LowerPlaneTasks, lower_plane_tasks

__all__ = [
    "PLANE_TASK",
    "TIR_PIPELINE",
    "AlignParamsToElements",
    "LowerPlaneTasks",
    "SerializeOnOneCore",
    "align_params_to_elements",
    "lower_plane_tasks",
    "on_one_core",
    "serialize_parallel_loops",
]

#: Name of the registered TIR pipeline: :class:`LowerPlaneTasks`,
#: :class:`SerializeOnOneCore` and :class:`AlignParamsToElements`, then TVM's default.
TIR_PIPELINE = "tvm_lrn"


def _pipeline():
    stock, finalize_host, finalize_device = tvm.tirx.get_tir_pipeline("default")
    return (
        tvm.transform.Sequential(
            [LowerPlaneTasks(), SerializeOnOneCore(), AlignParamsToElements(), stock]
        ),
        finalize_host,
        finalize_device,
    )


tvm.tirx.register_tir_pipeline(TIR_PIPELINE, _pipeline)
