//! The events the payments service publishes (through its outbox).

use serde::{Deserialize, Serialize};
use tidewell_core::Event;

/// `payments.payment.created`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCreated {
    /// The payment.
    pub payment_id: String,
    /// Its owner.
    pub user_id: String,
    /// Minor units.
    pub amount_cents: i64,
    /// ISO 4217.
    pub currency: String,
    /// `pending`.
    pub status: String,
}
impl Event for PaymentCreated {
    const TYPE: &'static str = "payments.payment.created";
    const VERSION: u16 = 1;
}

/// `payments.payment.updated`: a status change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentUpdated {
    /// The payment.
    pub payment_id: String,
    /// Its owner.
    pub user_id: String,
    /// The status before.
    pub from: String,
    /// The status now.
    pub status: String,
}
impl Event for PaymentUpdated {
    const TYPE: &'static str = "payments.payment.updated";
    const VERSION: u16 = 1;
}
