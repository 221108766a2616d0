"""Reward functions, registered by name. See `registry.py` for the contract and `docs` in each module."""
from r1pipeline.rewards.registry import REWARDS, build_rewards, register, reward_names, validate_reward_config

__all__ = ["REWARDS", "build_rewards", "register", "reward_names", "validate_reward_config"]
