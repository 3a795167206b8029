//! A worker task that drives an [`Engine`] on the host's tokio runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crmkit_core::{Error, TenantId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Engine;

/// Most feed pages one round reads per tenant before it moves on to the next tenant (so
/// one busy tenant does not starve the others).
const PAGES_PER_ROUND: usize = 20;

/// A running worker (see [`Engine::spawn`]). Dropping it without [`Worker::shutdown`]
/// leaves the task running until the runtime ends.
#[derive(Debug)]
pub struct Worker {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Worker {
    /// Asks the worker to stop and waits until it has: the round in progress finishes
    /// (every action it started commits or fails whole), then the task ends.
    pub async fn shutdown(self) -> Result<(), Error> {
        // The receiver lives in the task; a send error means it already ended.
        let _ = self.stop.send(true);
        self.handle
            .await
            .map_err(|e| Error::storage(format!("the automation worker ended badly: {e}")))
    }

    /// The last error a round met, if any (a round that fails is tried again at the next
    /// interval; its events are not lost, the cursor only moves past processed ones).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Engine {
    /// Spawns a task on the current tokio runtime that, every `every`, runs each tenant's
    /// pending events ([`Engine::run_pending`]) and then [`Engine::tick`] (timers, due
    /// retries, deliveries), until [`Worker::shutdown`]. Must be called within a tokio
    /// runtime with the time driver. Several workers (in one process or several) may run
    /// on the same database: every effect still happens once.
    pub fn spawn(self: Arc<Self>, tenants: Vec<TenantId>, every: Duration) -> Worker {
        let (stop, mut stopped) = watch::channel(false);
        let last_error = Arc::new(Mutex::new(None));
        let errors = last_error.clone();
        let handle = tokio::spawn(async move {
            loop {
                for &tenant in &tenants {
                    if *stopped.borrow() {
                        return;
                    }
                    if let Err(e) = self.round(tenant).await {
                        *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Worker {
            stop,
            handle,
            last_error,
        }
    }

    /// One round for one tenant: the feed (a bounded number of pages), then the tick.
    async fn round(&self, tenant: TenantId) -> Result<(), Error> {
        for _ in 0..PAGES_PER_ROUND {
            if self.run_pending(tenant, 500).await?.events == 0 {
                break;
            }
        }
        self.tick(tenant).await.map(|_| ())
    }
}
