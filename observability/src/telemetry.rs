//! `init`: the tracing subscriber stack of an application (logs, OTLP trace export, propagators).
//!
//! Libraries never call this; they only emit `tracing` spans and events. An application calls
//! [`init`] once, first thing in `main`, and keeps the returned [`TelemetryGuard`] alive until it
//! exits: dropping it flushes the spans still queued.

use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tidewell_core::cli::Var;
use tidewell_core::config::Env;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::Error;
use crate::otlp_tls::OtlpTls;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One readable line per event, for terminals.
    #[default]
    Human,
    /// One JSON object per event, with the span fields, for log shippers.
    Json,
    /// No log output (traces may still be exported).
    Off,
}

/// What [`init`] installs. Build it with [`TelemetryConfig::from_env`] (the standard `OTEL_*`
/// variables plus `RUST_LOG`) or [`TelemetryConfig::new`] and the `with_*` methods.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `RUST_LOG` | log filter (`info,tidewell_event_hub=debug`) | `info` |
/// | `TIDEWELL_LOG_FORMAT` | `human`, `json` or `off` | `human` |
/// | `TIDEWELL_TRACE_FILTER` | which spans are exported, same syntax as `RUST_LOG` | `info` |
/// | `OTEL_SERVICE_NAME` | `service.name` of every span | the name given to `from_env` |
/// | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full OTLP/HTTP traces URL | unset |
/// | `OTEL_EXPORTER_OTLP_ENDPOINT` | OTLP/HTTP base URL (`/v1/traces` is appended) | unset: no export |
/// | `OTEL_EXPORTER_OTLP_PROTOCOL` | only `http/protobuf` is supported | `http/protobuf` |
/// | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT` | read by the exporter | |
/// | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | read by the SDK | `parentbased_always_on` |
/// | `OTEL_RESOURCE_ATTRIBUTES` | extra resource attributes | |
/// | `OTEL_TRACES_EXPORTER` | `otlp` or `none` | `otlp` |
/// | `OTEL_SDK_DISABLED` | `true` turns export off | `false` |
/// | `OTEL_EXPORTER_OTLP_CERTIFICATE` | PEM CA file trusted for `https://` (with the system's roots) | |
/// | `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CLIENT_KEY` | PEM client certificate and key (mutual TLS) | |
///
/// `https://` endpoints need the crate's `tls` feature (rustls); without it they are refused at
/// start with what to do. Each `OTEL_EXPORTER_OTLP_*` variable above may also be given in its
/// `OTEL_EXPORTER_OTLP_TRACES_*` form, which wins.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TelemetryConfig {
    /// `service.name` on every exported span.
    pub service_name: String,
    /// The log filter, in `RUST_LOG` syntax.
    pub log_filter: String,
    /// How logs are written.
    pub log_format: LogFormat,
    /// Which spans are exported, in `RUST_LOG` syntax.
    pub trace_filter: String,
    /// Where spans are exported (OTLP over HTTP with protobuf); `None` exports nothing.
    pub otlp_endpoint: Option<OtlpEndpoint>,
    /// Certificates for TLS to the collector.
    pub otlp_tls: OtlpTls,
}

/// Where [`init`] sends spans.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpEndpoint {
    /// The URL is the traces endpoint itself (`http://collector:4318/v1/traces`).
    Traces(String),
    /// Let the exporter read `OTEL_EXPORTER_OTLP_ENDPOINT` (and append `/v1/traces`).
    FromEnv,
}

impl TelemetryConfig {
    /// Human logs at `info`, no export, for `service_name`.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            log_filter: "info".into(),
            log_format: LogFormat::Human,
            trace_filter: "info".into(),
            otlp_endpoint: None,
            otlp_tls: OtlpTls::default(),
        }
    }

    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for a
    /// program's `--help`, see `tidewell_core::cli`).
    pub const VARS: &[Var] = &[
        Var::new(
            "RUST_LOG",
            "info",
            "which logs are written (tracing's filter syntax)",
        ),
        Var::new("TIDEWELL_LOG_FORMAT", "human", "human, json or off"),
        Var::new("TIDEWELL_TRACE_FILTER", "info", "which spans are exported"),
        Var::new(
            "OTEL_SERVICE_NAME",
            "",
            "service.name on exported spans (default: the program's)",
        ),
        Var::new("OTEL_SDK_DISABLED", "false", "true exports nothing"),
        Var::new("OTEL_TRACES_EXPORTER", "otlp", "otlp or none"),
        Var::new(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "",
            "the OTLP/HTTP collector (unset: no export)",
        ),
        Var::new(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "",
            "the traces URL itself, over the endpoint",
        ),
        Var::new(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/protobuf",
            "only http/protobuf",
        ),
        Var::new(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "",
            "the same, for traces",
        ),
        Var::new(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "",
            "extra CA certificates (PEM) for https://",
        ),
        Var::new(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            "",
            "client certificate (PEM), mutual TLS",
        ),
        Var::new(
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            "",
            "client key (PEM), mutual TLS",
        ),
    ];

    /// Reads the variables in the table above; `default_service_name` is used when
    /// `OTEL_SERVICE_NAME` is unset.
    pub fn from_env(default_service_name: &str) -> Result<Self, Error> {
        Self::from_source(default_service_name, &Env::process())
    }

    fn from_source(default_service_name: &str, env: &Env) -> Result<Self, Error> {
        let config = |e: tidewell_core::Error| Error::Config(e.to_string());
        let text = |name: &str| -> Result<Option<String>, Error> {
            Ok(env
                .string(name)
                .map_err(config)?
                .filter(|v| !v.trim().is_empty()))
        };
        let log_format = match text("TIDEWELL_LOG_FORMAT")?.as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some("off") => LogFormat::Off,
            Some(other) => {
                return Err(Error::Config(format!(
                    "TIDEWELL_LOG_FORMAT={other:?} is not a log format; use human, json or off"
                )));
            }
        };
        let disabled = env
            .bool("OTEL_SDK_DISABLED")
            .map_err(config)?
            .unwrap_or(false);
        let exporter = text("OTEL_TRACES_EXPORTER")?;
        let export = match exporter.as_deref() {
            None | Some("otlp") => !disabled,
            Some("none") => false,
            Some(other) => {
                return Err(Error::Config(format!(
                    "OTEL_TRACES_EXPORTER={other:?} is not supported; use otlp (OTLP over HTTP) or none"
                )));
            }
        };
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(p) = text(var)?
                && p != "http/protobuf"
            {
                return Err(Error::Config(format!(
                    "{var}={p:?} is not supported; use http/protobuf (the collector's port 4318)"
                )));
            }
        }
        let otlp_endpoint = if !export {
            None
        } else if let Some(url) = text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")? {
            check_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url)?;
            Some(OtlpEndpoint::Traces(url))
        } else if let Some(url) = text("OTEL_EXPORTER_OTLP_ENDPOINT")? {
            check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", &url)?;
            Some(OtlpEndpoint::FromEnv)
        } else {
            None
        };
        let path = |name: &str| -> Result<Option<std::path::PathBuf>, Error> {
            let traces = name.replace("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_");
            Ok(text(&traces)?.or(text(name)?).map(Into::into))
        };
        let otlp_tls = OtlpTls {
            certificate: path("OTEL_EXPORTER_OTLP_CERTIFICATE")?,
            client_certificate: path("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")?,
            client_key: path("OTEL_EXPORTER_OTLP_CLIENT_KEY")?,
        };
        Ok(Self {
            otlp_tls,
            service_name: text("OTEL_SERVICE_NAME")?
                .unwrap_or_else(|| default_service_name.to_owned()),
            log_filter: text("RUST_LOG")?.unwrap_or_else(|| "info".into()),
            log_format,
            trace_filter: text("TIDEWELL_TRACE_FILTER")?.unwrap_or_else(|| "info".into()),
            otlp_endpoint,
        })
    }

    /// Sets the log filter (`RUST_LOG` syntax).
    pub fn with_log_filter(mut self, filter: impl Into<String>) -> Self {
        self.log_filter = filter.into();
        self
    }

    /// Sets how logs are written.
    pub fn with_log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// Sets which spans are exported (`RUST_LOG` syntax).
    pub fn with_trace_filter(mut self, filter: impl Into<String>) -> Self {
        self.trace_filter = filter.into();
        self
    }

    /// Exports spans to this OTLP/HTTP traces URL (`http://collector:4318/v1/traces`).
    pub fn with_otlp_traces_endpoint(mut self, url: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(OtlpEndpoint::Traces(url.into()));
        self
    }

    /// Trusts the CA certificates in this PEM file (besides the system's roots) for `https://`
    /// endpoints (feature `tls`).
    #[must_use]
    pub fn with_otlp_certificate(mut self, pem_file: impl Into<std::path::PathBuf>) -> Self {
        self.otlp_tls.certificate = Some(pem_file.into());
        self
    }
}

/// Keeps the trace pipeline running; dropping it flushes queued spans (waiting up to 5 s) and
/// stops the exporter.
#[must_use = "dropping the guard at once stops trace export"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends every span ended so far and waits for the collector's answer.
    pub fn flush(&self) -> Result<(), Error> {
        match &self.provider {
            Some(p) => p
                .force_flush()
                .map_err(|e| Error::Export(format!("cannot flush spans: {e}"))),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(error) = p.shutdown_with_timeout(Duration::from_secs(5))
        {
            tracing::warn!(%error, "spans still queued at shutdown were not all exported");
        }
    }
}

/// Refuses an endpoint the exporter cannot reach, at start rather than as lost spans later:
/// without the `tls` feature the exporter speaks plain HTTP only, so `https://` is refused with
/// the ways out.
fn check_endpoint(what: &str, url: &str) -> Result<(), Error> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http") => Ok(()),
        Some("https") if cfg!(feature = "tls") => Ok(()),
        Some("https") => Err(Error::Config(format!(
            "{what}={url:?} needs TLS: enable the `tls` feature of tidewell-observability, or \
             send spans over http:// to a collector or agent next to the service (an \
             OpenTelemetry Collector on localhost:4318) and let it forward over TLS"
        ))),
        _ => Err(Error::Config(format!(
            "{what}={url:?} is not an http:// URL; use e.g. http://localhost:4318"
        ))),
    }
}

/// Installs the global tracing subscriber (filtered logs on stderr, OTLP span export if
/// configured) and the W3C TraceContext + Baggage propagators. Call it once, from `main`.
///
/// With no endpoint configured nothing is exported and no export error is ever logged.
///
/// ```no_run
/// use tidewell_observability::{TelemetryConfig, init};
///
/// # fn main() -> Result<(), tidewell_observability::Error> {
/// let _telemetry = init(TelemetryConfig::from_env("payments")?)?;
/// tracing::info!("started");
/// # Ok(()) }
/// ```
// Long: builds the tracing stack in the order its layers must be composed (filter, logs, OTLP
// exporter, propagators), each step configured from the one `TelemetryConfig`.
pub fn init(config: TelemetryConfig) -> Result<TelemetryGuard, Error> {
    let filter = |spec: &str, what: &str| {
        EnvFilter::builder().parse(spec).map_err(|e| {
            Error::Config(format!(
                "{what} filter {spec:?} is invalid ({e}); use RUST_LOG syntax such as info,my_crate=debug"
            ))
        })
    };
    let log_filter = filter(&config.log_filter, "log")?;
    let trace_filter = filter(&config.trace_filter, "trace")?;

    let logs = match config.log_format {
        LogFormat::Human => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(log_filter)
                .boxed(),
        ),
        LogFormat::Json => Some(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::stderr)
                .with_filter(log_filter)
                .boxed(),
        ),
        LogFormat::Off => None,
    };

    let provider = match &config.otlp_endpoint {
        None => None,
        Some(endpoint) => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
            if let OtlpEndpoint::Traces(url) = endpoint {
                check_endpoint("the OTLP traces endpoint", url)?;
                builder = builder.with_endpoint(url.clone());
            }
            #[cfg(feature = "tls")]
            {
                use opentelemetry_otlp::WithHttpConfig as _;
                builder = builder.with_http_client(crate::tls::client(
                    &config.otlp_tls,
                    Duration::from_secs(10),
                )?);
            }
            #[cfg(not(feature = "tls"))]
            if !config.otlp_tls.is_empty() {
                return Err(Error::Config(
                    "OTEL_EXPORTER_OTLP_CERTIFICATE / _CLIENT_CERTIFICATE / _CLIENT_KEY are set \
                     but TLS is not built in: enable the `tls` feature of tidewell-observability"
                        .into(),
                ));
            }
            let exporter = builder.build().map_err(|e| {
                Error::Config(format!(
                    "cannot build the OTLP exporter ({e}); check OTEL_EXPORTER_OTLP_ENDPOINT (http://host:4318)"
                ))
            })?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
    };
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("tidewell"))
            .with_filter(trace_filter)
    });

    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|e| {
            Error::Config(format!(
                "a global tracing subscriber is already installed ({e}); call init once, from main, and not in libraries"
            ))
        })?;
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
    }
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("telemetry.rs"), TelemetryConfig::VARS);
    }

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::from_pairs(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        let c = TelemetryConfig::from_source("svc", &env(&[])).unwrap();
        assert_eq!(c.otlp_endpoint, None);
        assert_eq!(c.service_name, "svc");
        assert_eq!(c.log_format, LogFormat::Human);
    }

    #[test]
    fn standard_variables_are_read() {
        let c = TelemetryConfig::from_source(
            "svc",
            &env(&[
                ("OTEL_SERVICE_NAME", "payments"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("TIDEWELL_LOG_FORMAT", "json"),
                ("RUST_LOG", "warn"),
            ]),
        )
        .unwrap();
        assert_eq!(c.service_name, "payments");
        assert_eq!(c.otlp_endpoint, Some(OtlpEndpoint::FromEnv));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_filter, "warn");
        let c = TelemetryConfig::from_source(
            "svc",
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://b:4318/v1/traces",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.otlp_endpoint,
            Some(OtlpEndpoint::Traces("http://b:4318/v1/traces".into()))
        );
    }

    #[test]
    fn endpoints_the_exporter_cannot_reach_are_refused_at_start() {
        let mut refused = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "http://"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "grpc://collector:4317",
                "http://",
            ),
        ];
        if cfg!(not(feature = "tls")) {
            refused.push((
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector:4318",
                "`tls` feature",
            ));
            refused.push((
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "HTTPS://collector:4318/v1/traces",
                "`tls` feature",
            ));
        }
        for (var, url, says) in refused {
            let e = TelemetryConfig::from_source("svc", &env(&[(var, url)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(var) && e.contains(url) && e.contains(says),
                "{e}"
            );
        }
        #[cfg(not(feature = "tls"))]
        {
            let e = init(TelemetryConfig::new("svc").with_otlp_traces_endpoint("https://c:4318"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("`tls` feature"), "{e}");
            let e = init(
                TelemetryConfig::new("svc")
                    .with_otlp_traces_endpoint("http://c:4318")
                    .with_otlp_certificate("/etc/ca.pem"),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("`tls` feature"), "{e}");
        }
        // Switched off, the endpoint is not looked at.
        let c = TelemetryConfig::from_source(
            "svc",
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(c.otlp_endpoint, None);
    }

    #[test]
    fn certificate_files_are_read_the_traces_form_first() {
        let c = TelemetryConfig::from_source(
            "svc",
            &env(&[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                    "/etc/traces-ca.pem",
                ),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/client.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/client.key"),
            ]),
        )
        .unwrap();
        let path = |p: &str| Some(std::path::PathBuf::from(p));
        assert_eq!(c.otlp_tls.certificate, path("/etc/traces-ca.pem"));
        assert_eq!(c.otlp_tls.client_certificate, path("/etc/client.pem"));
        assert_eq!(c.otlp_tls.client_key, path("/etc/client.key"));
    }

    #[test]
    fn export_can_be_switched_off_and_bad_values_are_named() {
        for off in [
            [("OTEL_SDK_DISABLED", "true")],
            [("OTEL_TRACES_EXPORTER", "none")],
        ] {
            let mut vars = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318")];
            vars.extend(off);
            let c = TelemetryConfig::from_source("svc", &env(&vars)).unwrap();
            assert_eq!(c.otlp_endpoint, None, "{off:?}");
        }
        for (var, value) in [
            ("OTEL_TRACES_EXPORTER", "jaeger"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("TIDEWELL_LOG_FORMAT", "xml"),
        ] {
            let e = TelemetryConfig::from_source("svc", &env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(var) && e.contains(value), "{e}");
        }
    }
}
