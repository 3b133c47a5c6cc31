"""Evaluators for ``handlers.remote_evaluator``: functions from a run to feedback."""
