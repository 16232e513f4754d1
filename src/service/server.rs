//! The accept loop: an idle timeout for HTTP/1 connections (ADR 004) and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use super::{router, AppState, Limits};

/// A bound listener and the app, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Router,
    idle_timeout: Duration,
}

impl Server {
    pub async fn bind(addr: SocketAddr, state: Arc<AppState>, limits: Limits) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            app: router(state, limits),
            idle_timeout: limits.idle_timeout,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops taking requests and gives the ones in
    /// flight `grace` to finish; `cancel` is called a little before the end so that work still
    /// waiting on the upstream gives up (and answers 503, to be redelivered) rather than
    /// being cut off.
    ///
    /// A connection idle for the limits' `idle_timeout` between requests is closed (see
    /// [`IDLE_TIMEOUT`]).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        grace: Duration,
        cancel: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
        let stop = tokio_util::sync::CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            signal.cancel();
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.idle_timeout);
        let service = hyper_util::service::TowerToHyperService::new(self.app);
        let connections = hyper_util::server::graceful::GracefulShutdown::new();
        let listener = &self.listener;
        let accept = async || loop {
            match listener.accept().await {
                Ok((stream, _)) => return stream,
                // The peer left before we took the connection: nothing to wait for.
                Err(e) if is_connection_error(&e) => continue,
                // Out of file descriptors and the like: wait for some to close.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; trying again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        loop {
            let stream = tokio::select! {
                stream = accept() => stream,
                _ = stop.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let (builder, service, watcher) = (builder.clone(), service.clone(), connections.watcher());
            let (idle, stop) = (self.idle_timeout, stop.clone());
            tokio::spawn(async move {
                // The header timeout starts once the protocol is known, which takes a first
                // byte: a connection that sends none is closed here, or at shutdown.
                let mut first = [0u8; 1];
                tokio::select! {
                    peeked = tokio::time::timeout(idle, stream.peek(&mut first)) => if peeked.is_err() {
                        return;
                    },
                    _ = stop.cancelled() => return,
                }
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        tracing::info!("shutting down: no new requests, finishing the ones in flight");
        tokio::select! {
            _ = connections.shutdown() => Ok(()),
            _ = async {
                tokio::time::sleep(grace.mul_f64(0.8)).await;
                cancel();
                tokio::time::sleep(grace.mul_f64(0.2)).await;
            } => {
                tracing::warn!("shutdown grace period over: requests still in flight are cut off (Pub/Sub redelivers them)");
                Ok(())
            }
        }
    }
}

/// An `accept` error that concerns only the connection being accepted (as axum and hyper
/// treat them): take the next one at once.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}
