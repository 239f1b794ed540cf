//! Blocking work (file locks, index builds, hashing, model downloads, embedding) called
//! from async code without holding up the runtime's other tasks.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which blocks, where the caller is. On a worker thread of a multi-threaded tokio
/// runtime (a spawned task, a request handler) the worker first hands its other tasks to a
/// fresh thread (`block_in_place`), so timers, signal handlers and concurrent requests keep
/// running; elsewhere (the thread that called `block_on`, a current-thread runtime, or no
/// runtime: no worker's tasks wait on this thread) `f` just runs.
///
/// Unlike `spawn_blocking`, `f` may borrow: nothing outlives the call.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::blocking;
    use std::sync::mpsc;
    use std::time::Duration;

    /// With one worker thread busy in blocking work, a task spawned after it started runs
    /// only if the worker was handed over: without `block_in_place` the wait below times out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn other_tasks_run_while_a_worker_blocks() {
        let (tx, rx) = mpsc::channel();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        // Spawned: it runs on the one worker (the test's own body runs on the calling thread).
        let blocker = tokio::spawn(async move {
            started_tx.send(()).expect("started");
            blocking(|| rx.recv_timeout(Duration::from_secs(10)))
        });
        started_rx.await.expect("the blocking task started");
        let sender = tokio::spawn(async move { tx.send("ran").expect("send") });
        assert_eq!(blocker.await.expect("blocker"), Ok("ran"));
        sender.await.expect("sender");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_runs_it_inline() {
        let borrowed = String::from("borrowed");
        assert_eq!(blocking(|| borrowed.len()), 8);
    }

    #[test]
    fn outside_a_runtime_it_runs_inline() {
        assert_eq!(blocking(|| 2 + 2), 4);
    }
}
