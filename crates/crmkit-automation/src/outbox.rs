//! The delivery outbox: notifications and webhook calls that rules make are rows written
//! in the same commit as the run's log line, then delivered by [`crate::Engine::deliver`]
//! through what the host provides ([`Notifier`], [`WebhookClient`]): at least once, each
//! with a delivery id the receiver de-duplicates on.

use chrono::{DateTime, Utc};
use crmkit_core::event::decode_timestamp;
use crmkit_core::row::{opt_timestamp, take_opt_text, take_text, uuid};
use crmkit_core::store::{BoxFuture, Row, Value};
use crmkit_core::{Error, Result, RuleId, TenantId, UserId};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::model::Channel;

/// The header a webhook call carries its signature in: `sha256=<hex of
/// HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Crmkit-Signature";
/// The header a webhook call carries its delivery id in (the same on every retry).
pub const DELIVERY_HEADER: &str = "X-Crmkit-Delivery";

/// A notification for the host to send (email, SMS, chat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The delivery id: the same on every attempt, so the host can de-duplicate.
    pub delivery: Uuid,
    /// The tenant.
    pub tenant: TenantId,
    /// The rule that sent it.
    pub rule: RuleId,
    /// The channel.
    pub channel: Channel,
    /// The user to notify (the host looks up their address for the channel).
    pub to: UserId,
    /// The rendered subject.
    pub subject: String,
    /// The rendered body.
    pub body: String,
}

/// A webhook call for the host's HTTP client to make: `POST url` with `body` as
/// `application/json` and the [`SIGNATURE_HEADER`] and [`DELIVERY_HEADER`] headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookCall {
    /// The delivery id (also in the body and the [`DELIVERY_HEADER`]).
    pub delivery: Uuid,
    /// The tenant.
    pub tenant: TenantId,
    /// The rule that made it.
    pub rule: RuleId,
    /// Where to.
    pub url: String,
    /// The JSON body, exactly as signed.
    pub body: String,
    /// `sha256=<hex>`: HMAC-SHA256 of the body with the action's secret.
    pub signature: String,
}

/// Sends notifications: the host's email, SMS or chat gateway. An error (or taking
/// longer than the engine's delivery timeout) makes the engine try again later.
pub trait Notifier: Send + Sync + 'static {
    /// Sends one notification.
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, std::result::Result<(), String>>;
}

/// Makes webhook calls: the host's HTTP client (a 2xx answer is success; anything else
/// an error). An error or a timeout makes the engine try again later.
pub trait WebhookClient: Send + Sync + 'static {
    /// Makes one call.
    fn post<'a>(&'a self, call: &'a WebhookCall) -> BoxFuture<'a, std::result::Result<(), String>>;
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn sign(secret: &str, body: &str) -> String {
    // HMAC takes a key of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body.as_bytes());
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// Delivered.
    Delivered,
    /// Given up after the engine's attempts; [`crate::Engine::retry_delivery`] sends it
    /// again.
    Failed,
}

impl DeliveryStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<DeliveryStatus> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            _ => Err(Error::storage(format!("unknown delivery status {s:?}"))),
        }
    }
}

/// What a delivery carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// A notification to a user.
    Notification {
        /// The channel.
        channel: Channel,
        /// The user.
        to: UserId,
        /// The subject.
        subject: String,
        /// The body.
        body: String,
    },
    /// A webhook call.
    Webhook {
        /// The URL.
        url: String,
        /// The signed body.
        body: String,
        /// Its signature.
        signature: String,
    },
}

/// A row of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The delivery id.
    pub id: Uuid,
    /// The rule that made it.
    pub rule: RuleId,
    /// What triggered the rule.
    pub occurrence: String,
    /// Which action of the rule.
    pub action: u32,
    /// What to deliver.
    pub payload: Payload,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending ones).
    pub next_attempt: Option<DateTime<Utc>>,
    /// The last attempt's error.
    pub error: Option<String>,
    /// When the rule made it.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Email => "email",
        Channel::Sms => "sms",
        Channel::Chat => "chat",
    }
}

impl Delivery {
    pub(crate) fn row(&self) -> Row {
        let (channel, recipient, subject, body, signature) = match &self.payload {
            Payload::Notification {
                channel,
                to,
                subject,
                body,
            } => (
                channel_name(*channel),
                to.as_uuid().to_string(),
                Some(subject.clone()),
                body.clone(),
                None,
            ),
            Payload::Webhook {
                url,
                body,
                signature,
            } => (
                "webhook",
                url.clone(),
                None,
                body.clone(),
                Some(signature.clone()),
            ),
        };
        vec![
            Value::Uuid(self.id),
            Value::Uuid(self.rule.as_uuid()),
            Value::Text(self.occurrence.clone()),
            Value::Int(i64::from(self.action)),
            Value::Text(channel.into()),
            Value::Text(recipient),
            Value::opt_text(subject),
            Value::Text(body),
            Value::opt_text(signature),
            Value::Text(self.status.as_str().into()),
            Value::Int(i64::from(self.attempts)),
            Value::opt_timestamp(self.next_attempt),
            Value::opt_text(self.error.clone()),
            Value::timestamp(self.created_at),
            Value::opt_timestamp(self.delivered_at),
        ]
    }

    pub(crate) fn decode(mut r: Row) -> Result<Delivery> {
        let bad = |w: &str| Error::storage(format!("malformed automation outbox row: {w}"));
        let int = |v: &Value, w: &str| {
            v.as_int()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| bad(w))
        };
        let channel = take_text(&mut r[4])?;
        let recipient = take_text(&mut r[5])?;
        let body = take_text(&mut r[7])?;
        let payload = if channel == "webhook" {
            Payload::Webhook {
                url: recipient,
                body,
                signature: take_opt_text(&mut r[8]).ok_or_else(|| bad("signature"))?,
            }
        } else {
            let channel = match channel.as_str() {
                "email" => Channel::Email,
                "sms" => Channel::Sms,
                "chat" => Channel::Chat,
                _ => return Err(bad("channel")),
            };
            Payload::Notification {
                channel,
                to: UserId::from_uuid(Uuid::parse_str(&recipient).map_err(|_| bad("recipient"))?),
                subject: take_opt_text(&mut r[6]).unwrap_or_default(),
                body,
            }
        };
        Ok(Delivery {
            id: uuid(&r[0])?,
            rule: RuleId::from_uuid(uuid(&r[1])?),
            occurrence: take_text(&mut r[2])?,
            action: int(&r[3], "action")?,
            payload,
            status: DeliveryStatus::parse(&take_text(&mut r[9])?)?,
            attempts: int(&r[10], "attempts")?,
            next_attempt: opt_timestamp(&r[11])?,
            error: take_opt_text(&mut r[12]),
            created_at: decode_timestamp(&r[13])?,
            delivered_at: opt_timestamp(&r[14])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
