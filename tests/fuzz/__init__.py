"""Property-based and coverage-guided fuzzing of the parsers and readers that take outside input."""
