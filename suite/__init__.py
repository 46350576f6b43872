"""Benchmark suite for meta-learned fine-tuning: CLI, config, runner, metering, results."""
__version__ = "0.1.0"
