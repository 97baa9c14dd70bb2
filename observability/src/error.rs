/// Everything that can go wrong in `tidewell-observability`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A metric could not be registered (most often: the same name registered twice).
    #[error("cannot register metric: {0}; is the same collector registered twice?")]
    Register(#[from] prometheus::Error),

    /// The registry could not be rendered in the text exposition format.
    #[error("cannot render metrics: {0}")]
    Render(String),

    /// The telemetry configuration is invalid, or `init` ran twice; the message names the
    /// variable or the call to fix.
    #[error("telemetry configuration: {0}")]
    Config(String),

    /// Spans could not be exported to the OTLP endpoint.
    #[error("trace export failed: {0}; is the collector at OTEL_EXPORTER_OTLP_ENDPOINT up?")]
    Export(String),
}
