"""conveyor's benchmark suite: `python benchmarks/run.py --help`."""
