//! Reloads on change: a debounced watch on the rule folders, and SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::control::store::RuleStore;
use crate::shutdown::Shutdown;

/// Reloads `store` on SIGHUP and, with `watch`, when a file under the rule paths changes
/// (changes settle for `debounce` first). Runs until `shutdown`.
pub fn spawn_reloader(store: Arc<RuleStore>, watch: bool, debounce: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    // Capacity 1: events arriving while a reload is pending coalesce into it (every reload
    // rescans everything, so no change is missed).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(1);
    let watcher = if watch { start_watcher(store.paths(), tx.clone()) } else { None };
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        tracing::info!(signal = "SIGHUP", "reloading rules");
                        let _ = tx.try_send("sighup");
                    }
                    () = shutdown.wait() => return,
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let cause = tokio::select! {
                c = rx.recv() => match c { Some(c) => c, None => return },
                () = shutdown.wait() => return,
            };
            if cause == "watch" {
                // Let an editor finish writing; later events fold into this reload.
                tokio::time::sleep(debounce).await;
                while rx.try_recv().is_ok() {}
            }
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.reload()).await {
                Ok(r) => tracing::debug!(cause, swapped = r.swapped, errors = r.errors.len(), "rules rescanned"),
                Err(e) => tracing::error!(error = %e, "rule reload task failed"),
            }
        }
    })
}

/// Watches the rule folders (and the folders of single rule files: editors often replace a
/// file by renaming, which a watch on the file itself would miss).
fn start_watcher(paths: &[PathBuf], tx: tokio::sync::mpsc::Sender<&'static str>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let handler = move |ev: notify::Result<notify::Event>| match ev {
        Ok(ev) if ev.kind.is_access() => {}
        Ok(_) => {
            let _ = tx.try_send("watch");
        }
        Err(e) => tracing::warn!(error = %e, "rule folder watch error"),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the rule paths; reload with SIGHUP or the API");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> =
        paths.iter().map(|p| if p.is_dir() { p.clone() } else { p.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf) }).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if let Err(e) = watcher.watch(&d, RecursiveMode::NonRecursive) {
            tracing::warn!(path = %d.display(), error = %e, "cannot watch a rule folder; reload with SIGHUP or the API");
        }
    }
    Some(watcher)
}
