"""python -m r1pipeline.memory [OVERRIDE ...]   the estimate of the composed config (the CLI's overrides), nothing runs
python -m r1pipeline.memory --table          every preset x GPU profile: bench/results/memory_table.md and README"""
from __future__ import annotations

import argparse
import logging
import sys

from r1pipeline.memory import advice, estimate, format_estimate
from r1pipeline.memory.reporting import write_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r1pipeline.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m r1pipeline")
    parser.add_argument("--table", action="store_true", help="write the preset x GPU-profile table instead")
    parser.add_argument("--prompt-tokens", type=int, default=None,
                        help="prompt length (default: dataset.max_prompt_tokens, else 256)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from r1pipeline.composing import compose
    from r1pipeline.sweep import register_resolvers

    register_resolvers()  # conf/hardware/cpu.yaml reads ${r1.native_bf16:}
    if args.table:
        print(f"wrote {write_table()} and README.md's \"Will it fit?\" table")
        return 0
    cfg = compose(*args.overrides)
    est = estimate(cfg, args.prompt_tokens)
    print(format_estimate(est))
    if not est.fits:
        print(advice(cfg, est))
    return 0 if est.fits else 1


if __name__ == "__main__":
    sys.exit(main())
