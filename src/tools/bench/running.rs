//! The worker of a batch: `silentauth-worker run` in its own process (the default), or a task
//! of the bench's process (for what needs the worker's memory: each job's HTTP time).

use super::child::WorkerProcess;
use super::sample::{ChildFigures, HttpTimes, Live};
use crate::tools::demo::{stop_worker, wait_ready};
use silentauth_worker::config::Config;
use silentauth_worker::worker::Worker;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The worker of a batch: a child process (the default) or a task in this process.
pub(super) enum Running {
    /// `silentauth-worker run` in its own process: its CPU and memory are its own; `live`
    /// holds what the sampler last read of its status.
    Child {
        process: Box<WorkerProcess>,
        live: Arc<Live>,
    },
    /// The worker as a task of this process (S6, which needs each job's HTTP time).
    InProcess {
        cancel: CancellationToken,
        handle: JoinHandle<Result<(), silentauth_worker::worker::WorkerError>>,
        live: Arc<Live>,
    },
}

impl Running {
    /// Starts the batch's worker and waits until it is ready.
    pub(super) async fn start(
        in_process: bool,
        keep_http_times: bool,
        config: Config,
    ) -> anyhow::Result<Running> {
        if !in_process {
            return Ok(Running::Child {
                process: Box::new(WorkerProcess::spawn(&config).await?),
                live: Arc::new(Live::Child(ChildFigures::default())),
            });
        }
        let worker = Worker::new(config);
        let counters = worker.counters();
        let http_times = keep_http_times.then(|| HttpTimes::observe(&counters));
        let cancel = CancellationToken::new();
        let mut handle = tokio::spawn(worker.run(cancel.clone()));
        if let Err(e) = wait_ready(&counters, &mut handle).await {
            cancel.cancel();
            return Err(e);
        }
        Ok(Running::InProcess {
            cancel,
            handle,
            live: Arc::new(Live::InProcess {
                counters,
                http_times,
            }),
        })
    }

    /// The worker's figures as the bench sees them.
    pub(super) fn live(&self) -> Arc<Live> {
        match self {
            Running::Child { live, .. } | Running::InProcess { live, .. } => live.clone(),
        }
    }

    /// The worker's process, when it has its own.
    pub(super) fn child(&self) -> Option<&WorkerProcess> {
        match self {
            Running::Child { process, .. } => Some(process),
            Running::InProcess { .. } => None,
        }
    }

    /// Stops the worker, within 30 s.
    pub(super) async fn stop(self) {
        match self {
            Running::InProcess {
                cancel, mut handle, ..
            } => {
                stop_worker(&cancel, &mut handle, Duration::from_secs(30), "bench").await;
            }
            Running::Child { process, .. } => process.stop(Duration::from_secs(30)).await,
        }
    }
}
