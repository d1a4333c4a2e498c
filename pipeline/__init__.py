"""Flywheel's plain-Python core: everything here runs and is tested without Dagster."""
