//! A custom `Student` backend: a wrapper that memoizes another student's answers, so
//! repeated prompts (eval reruns, retries) cost nothing. Any type implementing the trait can
//! drive the agent loop.
//!
//! ```sh
//! cargo run -p skd-examples --example custom_student [-- MODEL]
//! ```

use agent_loop::{Agent, AgentConfig, RunOptions};
use anyhow::Result;
use async_trait::async_trait;
use skill_core::{Completion, CompletionRequest, Student};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use student::StudentSettings;

/// Answers from memory when it has seen the exact request before.
struct MemoStudent {
    inner: Arc<dyn Student>,
    memo: Mutex<HashMap<String, Completion>>,
    hits: Mutex<usize>,
}

#[async_trait]
impl Student for MemoStudent {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    // A wrapper passes on what its inner student can enforce, so the loop still sends the
    // reply grammar.
    fn supports_grammar(&self) -> bool {
        self.inner.supports_grammar()
    }

    // ...and how many requests it decodes together, so an eval runner keeps it busy.
    fn max_parallel_requests(&self) -> usize {
        self.inner.max_parallel_requests()
    }

    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        let key = serde_json::to_string(request).map_err(|e| skill_core::Error::backend("memo", e))?;
        if let Some(hit) =
            self.memo.lock().map_err(|_| skill_core::Error::backend("memo", "poisoned"))?.get(&key).cloned()
        {
            *self.hits.lock().map_err(|_| skill_core::Error::backend("memo", "poisoned"))? += 1;
            return Ok(hit);
        }
        let completion = self.inner.complete(request).await?;
        self.memo.lock().map_err(|_| skill_core::Error::backend("memo", "poisoned"))?.insert(key, completion.clone());
        Ok(completion)
    }

    // A batch goes on as a batch (llama.cpp decodes it together); only the answers it does
    // not remember are asked for.
    async fn complete_batch(&self, requests: &[CompletionRequest]) -> Vec<skill_core::Result<Completion>> {
        let keys: Vec<String> = requests.iter().map(|r| serde_json::to_string(r).unwrap_or_default()).collect();
        let known: Vec<Option<Completion>> = {
            let memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
            keys.iter().map(|k| memo.get(k).cloned()).collect()
        };
        let misses: Vec<usize> = (0..requests.len()).filter(|&i| known[i].is_none()).collect();
        let asked: Vec<CompletionRequest> = misses.iter().map(|&i| requests[i].clone()).collect();
        let mut answers = self.inner.complete_batch(&asked).await.into_iter();
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        *self.hits.lock().unwrap_or_else(|e| e.into_inner()) += requests.len() - misses.len();
        known
            .into_iter()
            .zip(keys)
            .map(|(hit, key)| match hit {
                Some(hit) => Ok(hit),
                None => {
                    let answer = answers.next().unwrap_or_else(|| Err(skill_core::Error::backend("memo", "no answer")));
                    if let Ok(completion) = &answer {
                        memo.insert(key, completion.clone());
                    }
                    answer
                }
            })
            .collect()
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "smollm2-135m".into());
    // The library's resolver: a known id, a .gguf path, hf:OWNER/REPO, URL#model, with or
    // without an engine prefix (llama:, mistral:).
    let inner = student::load_student(&model, &StudentSettings::default(), &mut |_| {}).await?;
    let memo = Arc::new(MemoStudent { inner, memo: Mutex::new(HashMap::new()), hits: Mutex::new(0) });
    let agent = Agent::new(memo.clone(), AgentConfig { max_steps: 2, ..AgentConfig::default() });
    for round in 1..=2 {
        let t = std::time::Instant::now();
        let outcome = agent.run("Say hello in French.", &RunOptions::default(), &mut |_| {}).await?;
        println!("round {round}: {:?} {:?} in {:.2?}", outcome.outcome, outcome.answer, t.elapsed());
    }
    println!("answered from memory: {} time(s)", memo.hits.lock().map(|h| *h).unwrap_or(0));
    Ok(())
}
