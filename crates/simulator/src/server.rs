//! Serving the simulator: the router, a listener whose connections a drop fault can close, and
//! [`SimHandle`], the handle tests, `demo` and benchmarks hold.

use crate::conn::{second_handle, ConnInfo};
use crate::network_signals::wire::SIGNALS_PATH_PREFIX;
use crate::scenario::Scenario;
use crate::state::SimState;
use crate::stats::SimStats;
use crate::{authorize, control, network_signals, token, userinfo};
use axum::extract::connect_info::Connected;
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::Router;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The API's path prefix, as in the seed's URLs.
pub const PATH_PREFIX: &str = "/silent-auth/v1";

/// How long `shutdown` waits for in-flight requests before aborting the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A TCP listener that sets `TCP_NODELAY` and keeps a closable handle per connection.
struct SimListener(TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = TcpStream;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (TcpStream, ConnInfo) {
        loop {
            match self.0.accept().await {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let socket = second_handle(&stream);
                    return (stream, ConnInfo { socket });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::debug!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<ConnInfo> {
        self.0.local_addr()?;
        Ok(ConnInfo { socket: None })
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(
            &format!("{PATH_PREFIX}/oauth2/authorize"),
            get(authorize::handle),
        )
        .route(&format!("{PATH_PREFIX}/oauth2/token"), post(token::handle))
        .route(
            &format!("{PATH_PREFIX}/oauth2/userinfo"),
            get(userinfo::handle),
        )
        .merge(network_signals::routes())
        .route("/_sim/stats", get(control::stats))
        .route(
            "/_sim/scenario",
            get(control::get_scenario).put(control::put_scenario),
        )
        .route("/_sim/reset-stats", post(control::reset_stats))
        .route("/_sim/health", get(|| async { "ok" }))
        .with_state(state)
}

/// A running simulator. Dropping it stops the server; [`SimHandle::shutdown`] also waits for it.
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    cancel: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// Binds `listen` (`127.0.0.1:0` picks a free port) and serves on a spawned task.
    pub async fn start(listen: SocketAddr, scenario: Scenario) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(scenario));
        let cancel = CancellationToken::new();
        let app = router(state.clone()).into_make_service_with_connect_info::<ConnInfo>();
        let stop = cancel.clone();
        let sweeper_state = state.clone();
        let server = tokio::spawn(async move {
            let sweeper = tokio::spawn(sweep_forever(sweeper_state, stop.clone()));
            let served = axum::serve(SimListener(listener), app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "simulator server stopped");
            }
            sweeper.abort();
        });
        Ok(SimHandle {
            addr,
            state,
            cancel,
            server: Some(server),
        })
    }

    /// The bound address (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL, e.g. `http://127.0.0.1:PORT/silent-auth/v1` (an unspecified listen
    /// address is replaced by loopback so the URL can be dialled).
    pub fn base_url(&self) -> String {
        format!("http://{}{PATH_PREFIX}", self.dial_addr())
    }

    /// The Network Signals base URL, e.g. `http://127.0.0.1:PORT/network-signal/v1` (same
    /// process and port as [`SimHandle::base_url`]).
    pub fn signals_base_url(&self) -> String {
        format!("http://{}{SIGNALS_PATH_PREFIX}", self.dial_addr())
    }

    /// The bound address with an unspecified IP replaced by loopback, so URLs can be dialled.
    fn dial_addr(&self) -> SocketAddr {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        addr
    }

    /// Replaces the scenario (fault counters and the rate limit start afresh; codes and tokens
    /// already issued stay valid).
    pub fn set_scenario(&self, s: Scenario) {
        self.state.set_scenario(s);
    }

    /// A snapshot of the counters (the same data as `GET /_sim/stats`).
    pub fn stats(&self) -> SimStats {
        self.state.stats.snapshot()
    }

    /// Zeroes the counters (as `POST /_sim/reset-stats`).
    pub fn reset_stats(&self) {
        self.state.stats.reset();
    }

    /// Issues a code as a successful authorize would, without HTTP (fast load generation).
    pub fn mint_code(&self, client_id: &str, login_hint: &str, redirect_uri: &str) -> String {
        self.state.mint_code(client_id, login_hint, redirect_uri)
    }

    /// Moves the simulator's clock forward, so codes and tokens expire and SIM/device swaps age
    /// without sleeping.
    pub fn advance_clock(&self, by: Duration) {
        self.state.clock.advance(by);
    }

    /// Stops accepting, lets in-flight requests finish (up to a few seconds), then returns.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn sweep_forever(state: Arc<SimState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => state.sweep(),
        }
    }
}
