//! The benches' command-line flags: `--name value` pairs after `cargo bench --bench X --`.

/// The value after `--name` among the process's arguments, parsed; `None` when the flag is
/// absent or its value does not parse (the bench then keeps its default).
pub fn flag<T: std::str::FromStr>(name: &str) -> Option<T> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
}
