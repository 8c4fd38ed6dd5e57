"""GPU benchmarks of the DCN kernels (see bench_dcn.py)."""
