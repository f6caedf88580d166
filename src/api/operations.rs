//! `Operations`: what an administrator runs against a live warden. Today
//! that is `Backup`: the embedded store allows one process per data
//! directory, so a backup of a running warden has to be taken by warden
//! itself.
//!
//! The snapshot is written to an anonymous temporary file (under `TMPDIR`)
//! with commits paused ([`crate::store::Store::backup`]), then streamed from
//! that file with commits running again, so a slow client does not hold up
//! writers. The file is gone once the stream ends.

use std::io::{Read as _, Seek as _};
use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status::ApiError;
use super::App;
use crate::proto;
use crate::proto::operations_server::Operations;

/// Bytes per streamed message (well under the 4 MiB message limit).
const CHUNK: usize = 1 << 20;

pub struct OperationsService {
    app: Arc<App>,
}

impl OperationsService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

type ChunkStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::BackupResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Operations for OperationsService {
    type BackupStream = ChunkStream;

    async fn backup(
        &self,
        request: Request<proto::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let principal = super::principal(&request)?;
        let proto::BackupRequest {} = request.into_inner();
        let store = self.app.store.clone();
        let taken = async {
            let file = tempfile::tempfile()
                .map_err(|e| crate::store::StoreError::Io(format!("backup temp file: {e}")))?;
            let (mut file, summary) = store.backup(file).await?;
            file.rewind()
                .map_err(|e| crate::store::StoreError::Io(format!("backup temp file: {e}")))?;
            Ok::<_, crate::store::StoreError>((file, summary))
        };
        let (mut file, summary) = taken.await?;
        tracing::info!(
            principal = %principal.spiffe_id,
            ledger_size = summary.header.ledger_size,
            records = summary.records,
            bytes = summary.bytes,
            writes_paused_ms = summary.paused.as_millis() as u64,
            "backup taken"
        );
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let shutdown = self.app.shutdown.clone();
        tokio::task::spawn_blocking(move || {
            let mut first = Some(proto::BackupResponse {
                chunk: Vec::new(),
                ledger_size: summary.header.ledger_size,
                checkpoint: summary.header.checkpoint.clone().unwrap_or_default(),
                total_bytes: summary.bytes,
                records: summary.records,
                writes_paused_micros: summary.paused.as_micros() as u64,
            });
            let mut buf = vec![0u8; CHUNK];
            loop {
                if shutdown.is_cancelled() {
                    let _ = tx.blocking_send(Err(Status::unavailable(
                        "warden is shutting down; take the backup again once it is back",
                    )));
                    return;
                }
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the backup temp file failed");
                        let _ = tx.blocking_send(Err(ApiError::Unavailable.into()));
                        return;
                    }
                };
                if n == 0 && first.is_none() {
                    return;
                }
                let mut message = first.take().unwrap_or_default();
                message.chunk = buf[..n].to_vec();
                if tx.blocking_send(Ok(message)).is_err() {
                    // The caller went away.
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
