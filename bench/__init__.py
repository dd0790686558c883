"""sparselth benchmark suites. Run ``python -m bench.spmm --help`` (or ``make bench``)."""
