/// What can go wrong in `tidewell-websocket`'s API. Problems with one connection or frame never
/// surface here: they become an `error` frame, a close code or an HTTP 401.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the setting.
    #[error("websocket configuration: {0}")]
    Config(String),
    /// A room name is not 1 to 128 visible ASCII characters.
    #[error("{0:?} is not a valid room name; use 1 to 128 visible ASCII characters")]
    InvalidRoom(String),
    /// The event could not be encoded, or the text given as an event is not JSON.
    #[error("the event is not valid JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The Redis backplane could not be reached or subscribed to; the message says which.
    #[error("websocket backplane: {0}; is Redis running at that URL?")]
    Backplane(String),
    /// The server already has a backplane.
    #[error("this server already has a backplane")]
    BackplaneAttached,
    /// A bounded queue is full: the client's commands (the connection is not keeping up), or the
    /// backplane's publishes (Redis is slow or down). Nothing was queued; retry later.
    #[error("the {0} is full; nothing was queued, retry later")]
    Full(&'static str),
    /// The client (or the backplane's publisher) has stopped and takes no more commands.
    #[error("the {0} has stopped; make a new one")]
    Stopped(&'static str),
}
