/// Everything that can go wrong setting up `tidewell-websocket`. Problems with one connection or
/// frame never surface here: they become an `error` frame, a close code or an HTTP 401.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the setting.
    #[error("websocket configuration: {0}")]
    Config(String),
}
