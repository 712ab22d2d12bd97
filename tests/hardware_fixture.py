"""One made-up machine for the cost-model tests: round constants, so predictions are hand-checkable,
and in range for ``Hardware.from_dict`` (a file holding it is a *current* calibration)."""

from __future__ import annotations

from msli_core.serving import costmodel as cm


def made_up_hardware(name: str) -> cm.Hardware:
    """A :class:`~msli_core.serving.costmodel.Hardware` named ``name`` with round constants."""
    return cm.Hardware(
        name,
        gemm_flops={
            "torch": {"square": 1e11, "skinny": 4e10, "attention": 2.5e10},
            "numpy": {"square": 1e11},
        },
        bandwidth=1e10,
        gather_bandwidth=1e9,
        call_s={"torch": 1e-6, "numpy": 5e-7},
        source="test",
    )
