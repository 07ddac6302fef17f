"""Tests of the training stage: protocol, metrics, baselines, evaluation."""
