//! How values become bytes: JSON by default, MessagePack with feature `msgpack`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// The encoding of stored values. The first byte of every stored value names it, so a cache can
/// change codec without misreading old entries (they read as misses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (`serde_json`): readable with `redis-cli`.
    #[default]
    Json,
    /// MessagePack (`rmp-serde`, feature `msgpack`): smaller and faster.
    #[cfg(feature = "msgpack")]
    #[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
    MessagePack,
}

impl Codec {
    fn tag(self) -> u8 {
        match self {
            Self::Json => b'j',
            #[cfg(feature = "msgpack")]
            Self::MessagePack => b'm',
        }
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, Error> {
        // Most cached values are small documents: one allocation up front instead of growing.
        let mut out = Vec::with_capacity(256);
        out.push(self.tag());
        match self {
            Self::Json => {
                serde_json::to_writer(&mut out, value).map_err(|e| Error::Encode(e.to_string()))?;
            }
            #[cfg(feature = "msgpack")]
            Self::MessagePack => {
                rmp_serde::encode::write_named(&mut out, value)
                    .map_err(|e| Error::Encode(e.to_string()))?;
            }
        }
        Ok(out)
    }

    /// Decodes; `None` for bytes of another codec or that no longer fit `T` (a schema change).
    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Option<T> {
        let (&tag, body) = bytes.split_first()?;
        if tag != self.tag() {
            return None;
        }
        match self {
            Self::Json => serde_json::from_slice(body).ok(),
            #[cfg(feature = "msgpack")]
            Self::MessagePack => rmp_serde::from_slice(body).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_schema_change() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct V1 {
            id: u64,
        }
        #[derive(serde::Deserialize, Debug)]
        struct V2 {
            #[allow(dead_code)]
            id: String,
        }
        let bytes = Codec::Json.encode(&V1 { id: 3 }).unwrap();
        assert_eq!(Codec::Json.decode::<V1>(&bytes), Some(V1 { id: 3 }));
        assert!(
            Codec::Json.decode::<V2>(&bytes).is_none(),
            "a changed schema reads as a miss"
        );
        assert!(Codec::Json.decode::<V1>(b"").is_none());
        assert!(
            Codec::Json.decode::<V1>(b"x{}").is_none(),
            "another codec's bytes"
        );
    }
}
