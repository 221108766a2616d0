"""Will it fit? A per-device memory estimate of a composed config, before anything loads (no model, no data).

    python -m r1pipeline.memory experiment=mini_r1_countdown hardware=2x4090    # the table; nothing runs
    python -m r1pipeline.memory --table                  # every preset x GPU profile -> bench/results/memory_table.md

The CLI logs the same table after validation for every GPU profile (`report`, r1pipeline/cli.py), and one WARNING
naming the fields to change when the estimate exceeds `hardware.gpu_memory_gb`; an estimate never stops a run.
What is counted and how: r1pipeline/memory/estimate.py; how it compares with measured peaks (CPU only):
bench/results/memory_calibration.md.
"""
from r1pipeline.memory.estimate import Estimate, Part, StageMemory, estimate
from r1pipeline.memory.reporting import advice, format_estimate, report

__all__ = ["Estimate", "Part", "StageMemory", "advice", "estimate", "format_estimate", "report"]
