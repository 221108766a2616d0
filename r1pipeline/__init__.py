"""r1pipeline: DeepSeek-R1's multi-stage recipe as one Hydra-composed pipeline (README.md)."""
from r1pipeline.sweep import register_resolvers

register_resolvers()  # config interpolations the YAML uses (${r1.native_bf16:}, ${r1.short_dirname:...})
