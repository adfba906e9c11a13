"""Route-quality and performance benchmarks (`python -m benchmarks`); seeded, separate from the unit tests."""
