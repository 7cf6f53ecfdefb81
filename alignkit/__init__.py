"""alignkit: SFT then DPO, the Zephyr way, from one typed config."""

__version__ = "0.1.0"
