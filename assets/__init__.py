"""Flywheel's software-defined assets, one module per group."""
