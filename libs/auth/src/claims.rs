use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The claims of a Tidewell token.
///
/// Times are Unix seconds. `roles` may be empty; `sid` and `did` are present for tokens issued to
/// a user session on a device, absent for service tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Claims {
    /// The subject: the user (or service) id.
    pub sub: String,
    /// The subject's roles, e.g. `["admin"]`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The session id, used to revoke a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expires at.
    pub exp: u64,
    /// The issuer.
    pub iss: String,
    /// The audience (a JSON string, or an array on tokens from other issuers).
    #[serde(deserialize_with = "one_or_many", serialize_with = "string_if_one")]
    pub aud: Vec<String>,
}

impl Claims {
    /// Whether the subject has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn string_if_one<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}
