"""Test helpers shared by several modules (not fixtures): recorded machine figures."""

from __future__ import annotations

from pathlib import Path

from app.models import speed
from app.models.hardware import cpu

# Figures calibrated on a 2-core AMD EPYC VM (the CI machine's kind) by `tramontane doctor`.
RECORDED = speed.MachineSpeed(
    bandwidth=37.0e9, efficiency=0.86, layer_s=197e-6, prompt_flops=300e9,
    head_s=13e-6, calibrated_with="smollm2-135m-instruct + qwen2.5-coder-1.5b-instruct",
    measured_at=1.8e9,
)


def write_machine_speed(data_dir: Path, figures: speed.MachineSpeed = RECORDED) -> None:
    """Cache `figures` as this machine's, so predictions use them without measuring."""
    from dataclasses import replace

    speed.save(data_dir, replace(figures, cpu=cpu()[0]))


# A file with an off-by-one in mean(), for the edit tests (CLI, code pane, terminal).
BUGGY_MEAN = '''import math


def mean(values):
    """The arithmetic mean of a non-empty list."""
    total = 0
    for i in range(len(values) - 1):
        total += values[i]
    return total / len(values)
'''
