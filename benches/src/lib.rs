//! Criterion micro-benchmarks live in `benches/`; this crate has no library code. Run them
//! with `cargo bench -p corecast-benches` (see docs/benchmarks.md).
