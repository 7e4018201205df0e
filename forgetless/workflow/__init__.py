"""End-to-end workflows: `run` (evaluate, train protected, evaluate, compare, report) and the strategy study."""
