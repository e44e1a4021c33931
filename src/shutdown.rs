//! The shutdown signal: a `watch` channel every listener and background task selects on.

use tokio::sync::watch;

/// Resolves once `rx` says stop (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
