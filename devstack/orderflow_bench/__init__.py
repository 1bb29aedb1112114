"""orderflow's benchmarks: the pipeline under load (make bench) and the protocols alone (make bench-protocols)."""
