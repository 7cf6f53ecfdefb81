"""TRANSITIONAL: profiles are config layers and live in alignkit.config.profiles; this name stays only until
alignkit/plan.py (the memory planner, being moved to alignkit/memory/) imports them from there. Delete then."""

from alignkit.config.profiles import *  # noqa: F401,F403
from alignkit.config.profiles import deep_merge, load_spec, load_stack  # noqa: F401
