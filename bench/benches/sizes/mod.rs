//! What the benchmarks at 100k, 1M and 10M rows (`scale`, `dashboard`) share: their
//! command-line arguments and how they print a duration.

use std::time::Duration;

/// The value after `name` on the command line, or `default`.
pub(crate) fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

/// `--sizes 100000,1000000` (the default): the row counts to seed, one after the other.
pub(crate) fn sizes(args: &[String]) -> Vec<u64> {
    arg(args, "--sizes", "100000,1000000")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// `--stores sqlite,postgres` (the default): the databases to run on, in order.
pub(crate) fn stores(args: &[String]) -> Vec<String> {
    arg(args, "--stores", "sqlite,postgres")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// `d` in milliseconds.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
