//! A service's binary: the command line, telemetry, the event hub, serving until a signal.

use std::error::Error;
use std::future::Future;
use std::process::ExitCode;

use axum::Router;
use tidewell_core::cli::{Cli, Var};
use tidewell_event_hub::{Hub, HubBuilder, ServiceQueue, Topology};
use tidewell_observability::TelemetryConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ListenError;

/// A reference service as its binary runs it with [`run_service`]: configured from the
/// environment, connected to the event hub, serving one router.
pub trait Service: Sized {
    /// Its configuration.
    type Config;
    /// Why it cannot start.
    type Error: Error + 'static;

    /// Its name: the telemetry service name, the events' `source`, the logs'.
    const NAME: &'static str;
    /// The variables its binary reads besides telemetry's, list by list (its configuration's
    /// `VARS`, `HubConfig::VARS`, ...), for `--help`.
    const VARS: &'static [&'static [Var]];

    /// Its configuration from the process environment.
    fn config_from_env() -> Result<Self::Config, tidewell_core::Error>;

    /// The queues it consumes, for the hub's topology (none for a service that only publishes:
    /// its events wait in its outbox until a consumer's queue is bound to them).
    fn queues(config: &Self::Config) -> Vec<ServiceQueue>;

    /// Binds the configured address; the error names the variable that sets it.
    fn listen(config: &Self::Config) -> impl Future<Output = Result<TcpListener, ListenError>>;

    /// Starts it on `hub`, with what else it needs from the environment (a cache, say); what it
    /// spawns ends with `stop`.
    fn launch(
        config: Self::Config,
        hub: Hub,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<Self, Self::Error>>;

    /// Its routes (its [`Ops`](crate::Ops) routes included).
    fn router(&self) -> Router;

    /// Its metrics and readiness: [`run_service`] adds the hub's metrics and readiness, the
    /// dead letters of [`queues`](Self::queues) and the process's metrics.
    fn ops(&self) -> &crate::Ops;

    /// Serves [`router`](Self::router) on `listener` until `shutdown` (default: [`serve`](crate::serve())).
    fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = std::io::Result<()>> {
        crate::serve(listener, self.router(), shutdown)
    }
}

/// Runs a program: answers `--help`, `--version` or a usage error from `cli`, or else runs
/// `program` on a multi-threaded runtime with telemetry installed as `name` (its variables are
/// `TelemetryConfig::VARS`, which `cli` should list) and reports its error, if any, for a person
/// (exit 1).
///
/// ```no_run
/// use std::process::ExitCode;
/// use tidewell_core::cli::Cli;
///
/// fn main() -> ExitCode {
///     let cli = Cli::new("greeter", env!("CARGO_PKG_VERSION"), "Greets.")
///         .vars(tidewell_observability::TelemetryConfig::VARS);
///     tidewell_service_kit::run(cli, "greeter", || async {
///         tracing::info!("hello");
///         Ok(())
///     })
/// }
/// ```
pub fn run<F, Fut>(cli: Cli, name: &'static str, program: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), Box<dyn Error>>>,
{
    if let Some(done) = cli.handle_args() {
        return done;
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Box::<dyn Error>::from)
        .and_then(|runtime| {
            runtime.block_on(async move {
                let _telemetry = tidewell_observability::init(TelemetryConfig::from_env(name)?)?;
                program().await
            })
        });
    cli.report(result)
}

/// The `main` of a service's binary: `cli` lists `S::VARS` and `TelemetryConfig::VARS`; then
/// [`run`] reads the configuration, binds its address, connects the hub (`TIDEWELL_EVENT_HUB_*`)
/// with [`Service::queues`], launches the service and serves it until Ctrl-C or SIGTERM.
///
/// ```no_run
/// use std::process::ExitCode;
/// # struct AuthService(tidewell_service_kit::Ops);
/// # impl tidewell_service_kit::Service for AuthService {
/// #     type Config = ();
/// #     type Error = std::io::Error;
/// #     const NAME: &'static str = "auth";
/// #     const VARS: &'static [&'static [tidewell_core::cli::Var]] = &[];
/// #     fn config_from_env() -> Result<(), tidewell_core::Error> { Ok(()) }
/// #     fn queues(_: &()) -> Vec<tidewell_event_hub::ServiceQueue> { Vec::new() }
/// #     async fn listen(_: &()) -> Result<tokio::net::TcpListener, tidewell_service_kit::ListenError> {
/// #         tidewell_service_kit::listen(([127, 0, 0, 1], 0).into(), "AUTH_ADDR").await
/// #     }
/// #     async fn launch(_: (), _: tidewell_event_hub::Hub, _: tokio_util::sync::CancellationToken) -> Result<Self, std::io::Error> {
/// #         Ok(Self(tidewell_service_kit::Ops::new("auth").map_err(std::io::Error::other)?))
/// #     }
/// #     fn router(&self) -> axum::Router { self.0.routes() }
/// #     fn ops(&self) -> &tidewell_service_kit::Ops { &self.0 }
/// # }
/// use tidewell_core::cli::Cli;
///
/// fn main() -> ExitCode {
///     tidewell_service_kit::run_service::<AuthService>(Cli::new(
///         "tidewell-auth",
///         env!("CARGO_PKG_VERSION"),
///         "The Tidewell auth service.",
///     ))
/// }
/// ```
pub fn run_service<S: Service>(cli: Cli) -> ExitCode {
    let cli = S::VARS
        .iter()
        .fold(cli, |cli, vars| cli.vars(vars))
        .vars(TelemetryConfig::VARS);
    run(cli, S::NAME, serve_from_env::<S>)
}

async fn serve_from_env<S: Service>() -> Result<(), Box<dyn Error>> {
    let config = S::config_from_env()?;
    let listener = S::listen(&config).await?;
    let queues = S::queues(&config);
    let names: Vec<String> = queues.iter().map(ServiceQueue::name).collect();
    let hub = HubBuilder::from_env(S::NAME)?
        .topology(queues.into_iter().fold(Topology::new(), Topology::service))
        .connect()
        .await?;
    let stop = CancellationToken::new();
    let service = S::launch(config, hub.clone(), stop.clone()).await?;
    service.ops().hub(&hub, &names)?;
    service.ops().metrics().register_process_metrics()?;
    tracing::info!(service = S::NAME, addr = %listener.local_addr()?, "listening");
    let served = service.serve(listener, crate::shutdown_signal()).await;
    stop.cancel();
    Ok(served?)
}
