//! Runnable examples of the skd crates live beside this file (`cargo run -p skd-examples
//! --example NAME`); this library is empty and exists only so Cargo has a target.
