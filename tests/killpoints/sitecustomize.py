"""Test-only: a process started with tests/killpoints on PYTHONPATH imports this at start-up (Python's `site` loads
any `sitecustomize` on the path), so `python -m r1pipeline ...` runs as typed. With R1_KILL_AT=<point>:<n> in its
environment the process sends itself SIGKILL at a moment no outside timer hits reliably:

    save:N    inside the save of checkpoint-N: after the weights and optimizer are written, before
              trainer_state.json (transformers writes that last), i.e. a half-written checkpoint
    batch:B   when a generating stage is about to sample batch B: the batches before it are written

With R1_TEST_REWARD=1 it registers the test-only reward `test_length` (as tests/test_r1_zero_e2e.py does in its own
process): a score from the completion's character count, so that a random model's completions score differently
within a group and GRPO steps move the weights.

R1_KILL_AT is removed at once, so the processes this one starts (reward helpers, launched ranks) are not killed.
R1_TEST_REWARD stays: the ranks a launched profile starts (hardware=cpu_zero3, tests/test_zero3.py) read the reward
too, and in any other process registering it is harmless.
"""
import os
import signal

_spec = os.environ.pop("R1_KILL_AT", None)

if os.environ.get("R1_TEST_REWARD") == "1":
    from r1pipeline.rewards import register

    @register("test_length")
    class LengthReward:
        def __call__(self, completions, **kwargs):
            return [(len(c[0]["content"] if isinstance(c, list) else c) % 5) / 4 for c in completions]


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


if _spec:
    _point, _n = _spec.split(":")
    _n = int(_n)
    if _point == "save":
        from transformers import Trainer

        _save_rng_state = Trainer._save_rng_state

        def _killed_mid_save(self, output_dir):
            if self.state.global_step == _n:
                _die()
            return _save_rng_state(self, output_dir)

        Trainer._save_rng_state = _killed_mid_save
    elif _point == "batch":
        from r1pipeline import sampling

        _run = sampling._run

        def _killed_at_batch(engine, texts, batches, *args, **kwargs):
            if any(b == _n for b, _ in batches):
                _die()
            return _run(engine, texts, batches, *args, **kwargs)

        sampling._run = _killed_at_batch
    else:
        raise ValueError(f"R1_KILL_AT={_spec}: use save:N or batch:B")
