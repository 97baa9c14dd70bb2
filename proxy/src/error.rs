/// Everything that can go wrong setting up `tidewell-proxy`. Failures while proxying a request are
/// never errors to the caller of the library: they become 4xx/5xx responses with a JSON body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the route and field to fix.
    #[error("proxy configuration: {0}")]
    Config(String),

    /// The configuration file could not be read.
    #[error("cannot read proxy configuration {path}: {source}; check TIDEWELL_PROXY_CONFIG")]
    ReadConfig {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}; is the port in use?")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
