//! The agent loop: Plan, Tool Call, Observe, Refine.
//!
//! Given a task, the loop asks a [`Retriever`] for the skills and notes that fit, shows the
//! [`Student`] the skill catalog, and runs it step by step over [`Tool`]s (built-ins, Rust
//! functions, MCP servers) until a final answer, writing a JSONL transcript of every step.
//! Today this crate only re-exports the traits it is generic over; the loop itself lands
//! with the student work.

pub use skill_core::{Retriever, Student, Tool};
