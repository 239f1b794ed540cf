//! The student: a small local model that executes skills.
//!
//! This crate will hold `MistralRsStudent` (a quantized GGUF loaded in-process through
//! mistral.rs on the CPU) and `OpenAiCompatStudent` (Ollama, llama.cpp server, vLLM), both
//! behind the [`Student`] trait, plus model management (pull, verify, cache). Today it only
//! re-exports the trait from `skill-core`; backends land with the agent-loop work.

pub use skill_core::Student;
