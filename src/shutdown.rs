//! Shutdown signals: Ctrl-C (SIGINT) and SIGTERM, the two ways users and Cloud Run stop us.

use std::future::Future;

/// A future that completes when the process is asked to stop. The handlers are installed when
/// this is called (inside the runtime), not when the future is first polled: call it before
/// telling anyone you are ready (`listening on ...`), so a signal sent right after that is
/// never met by the default action (death by SIGTERM).
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => {}
                _ = wait(term) => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
