//! Runnable Tidewell examples, one idea each. This library is empty on purpose: the programs are
//! the `[[example]]` targets beside it (`cargo run --example quickstart`).
