//! Group commit for flushes. Writers that finished their transaction ask for
//! a flush and wait; one background task flushes once for everyone waiting,
//! then wakes them all. A writer is only woken by a flush that started after
//! it asked, so its data is on disk when it returns.

use tokio::sync::{mpsc, oneshot};

use super::StoreError;

#[derive(Clone)]
pub struct Flusher {
    requests: mpsc::UnboundedSender<oneshot::Sender<Result<(), String>>>,
}

impl Flusher {
    pub fn spawn(db: sled::Db) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<oneshot::Sender<Result<(), String>>>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut waiters = vec![first];
                while let Ok(w) = rx.try_recv() {
                    waiters.push(w);
                }
                let db = db.clone();
                let result = match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                for w in waiters {
                    // A waiter that gave up (its call was cancelled) is fine to skip.
                    let _ = w.send(result.clone());
                }
            }
        });
        Self { requests: tx }
    }

    /// Returns once everything written before this call is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(tx)
            .map_err(|_| StoreError::Io("flusher stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Io("flusher stopped".into()))?
            .map_err(StoreError::Io)
    }
}
