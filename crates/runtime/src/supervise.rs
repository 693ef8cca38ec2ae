//! Supervised background tasks: none dies silently.
//!
//! A background loop that panics, or returns while its service still runs, is restarted after
//! a short jittered pause that grows while it keeps failing (100 ms up to 5 s, reset once a run
//! lasted [`HEALTHY_RUN`]), is logged, and is counted in `beckon_task_restarts_total{task}`.
//! Each task's [`TaskStatus`] says whether it runs right now, so readiness can report a
//! service whose needed worker is down (crash-looping, or in its pause).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first pause before a restart.
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause before a restart.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(5);
/// A run at least this long counts as healthy: the next failure starts from the first pause.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// One supervised task's name and whether it runs now. Cloning shares it.
#[derive(Debug, Clone)]
pub struct TaskStatus {
    name: &'static str,
    running: Arc<AtomicBool>,
}

impl TaskStatus {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the task runs now: `false` between a failure and its restart, and once the
    /// supervisor stopped.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }
}

/// Whether every task name among `tasks` has at least one instance running (tasks started
/// several times under one name, such as a pool of workers, need one of them), with each
/// name's state, in the order first seen.
pub fn all_running(tasks: &[TaskStatus]) -> (bool, Vec<(&'static str, bool)>) {
    let mut by_name: Vec<(&'static str, bool)> = Vec::new();
    for task in tasks {
        match by_name.iter_mut().find(|(name, _)| *name == task.name) {
            Some((_, up)) => *up |= task.is_running(),
            None => by_name.push((task.name, task.is_running())),
        }
    }
    (by_name.iter().all(|(_, up)| *up), by_name)
}

fn pauses() -> impl Iterator<Item = Duration> {
    crate::backoff::pauses(FIRST_PAUSE, LONGEST_PAUSE)
}

/// Runs `make()` on the current runtime as the task `name`, restarting it whenever it panics
/// or returns, until `cancel` fires. On cancel the supervisor stops restarting and lets the
/// current run end on its own (it should watch `cancel`, or something that ends with it).
pub fn supervise<F, Fut>(name: &'static str, cancel: CancellationToken, mut make: F) -> TaskStatus
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let status = TaskStatus {
        name,
        running: Arc::new(AtomicBool::new(true)),
    };
    let running = status.running.clone();
    tokio::spawn(async move {
        let mut pause = pauses();
        loop {
            running.store(true, Ordering::Relaxed);
            let started = Instant::now();
            let mut run = tokio::spawn(make());
            let ended = tokio::select! {
                ended = &mut run => ended,
                _ = cancel.cancelled() => return,
            };
            running.store(false, Ordering::Relaxed);
            if cancel.is_cancelled() {
                return;
            }
            match ended {
                Ok(()) => tracing::error!(task = name, "a background task returned; restarting it"),
                Err(err) if err.is_panic() => {
                    let panic = err.into_panic();
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(task = name, panic = %message, "a background task panicked; restarting it");
                }
                Err(err) => {
                    tracing::error!(task = name, error = %err, "a background task was cancelled; restarting it")
                }
            }
            metrics::counter!("beckon_task_restarts_total", "task" => name).increment(1);
            if started.elapsed() >= HEALTHY_RUN {
                pause = pauses();
            }
            let wait = pause.next().unwrap_or(LONGEST_PAUSE);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return,
            }
        }
    });
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Polls `check` every 10 ms until it holds, or panics after 5 s.
    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_restarted_and_counted() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let status = supervise("flaky", cancel.clone(), move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match run {
                    0 => panic!("the first run panics"),
                    1 => {} // the second returns early
                    _ => std::future::pending().await,
                }
            }
        });

        until("a third run", || runs.load(Ordering::SeqCst) == 3).await;
        until("the task to run", || status.is_running()).await;
        assert_eq!(status.name(), "flaky");
        let rendered = metrics.render();
        assert!(
            rendered.contains("beckon_task_restarts_total{task=\"flaky\"} 2"),
            "{rendered}"
        );
        assert!(all_running(std::slice::from_ref(&status)).0);

        cancel.cancel();
        until("the supervisor to stop", || Arc::strong_count(&runs) == 1).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "no restart after cancel");
    }

    #[tokio::test]
    async fn a_name_is_running_while_one_of_its_instances_runs() {
        let up = TaskStatus {
            name: "intake",
            running: Arc::new(AtomicBool::new(true)),
        };
        let down = |name| TaskStatus {
            name,
            running: Arc::new(AtomicBool::new(false)),
        };
        let (ready, states) = all_running(&[down("intake"), up.clone(), down("relay")]);
        assert!(!ready);
        assert_eq!(states, vec![("intake", true), ("relay", false)]);
        assert!(all_running(&[down("intake"), up]).0);
    }
}
