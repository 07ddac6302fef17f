"""Tests of the models stage: candidate index and candidate generation."""
