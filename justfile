# pgx recipes; every one is a plain cargo command, so `just` is a convenience, not a need.

# pgx's main job on the embedded PostgreSQL
demo:
    cargo run --release -- experiment index-strategies

# the test suite (real PostgreSQL, started by the tests), after installing what is missing
test:
    scripts/test

# formatting and lints as CI expects them
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# apply the seeds' schemas to the embedded cluster and show their status
migrate:
    cargo run --release -- apply
    cargo run --release -- status

# regenerate every committed report at its default scale
reports:
    for f in experiments/*.yaml; do cargo run --release -- experiment "$f"; done

# every shipped experiment re-run with its wall time, recorded in reports/benchmarks/experiment-wall-times.md (long)
bench:
    cargo bench --bench experiment_wall_time

# pgx's load driver vs pgbench -S, written to reports/benchmarks/load-vs-pgbench.md (~5 min)
bench-load:
    cargo bench --bench load_vs_pgbench

# statement splitting of generated 1-8 MB migrations (seconds; no server)
bench-split:
    cargo bench --bench sql_split
