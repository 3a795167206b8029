//! The delivery outbox: notifications and webhook calls that rules make are rows written
//! in the same commit as the run's log line, then delivered by [`crate::Engine::deliver`]
//! through what the host provides ([`Notifier`], [`WebhookClient`]): at least once, each
//! with a delivery id the receiver de-duplicates on.

use chrono::{DateTime, Utc};
use crmkit_core::event::decode_timestamp;
use crmkit_core::row::{opt_timestamp, take_opt_text, take_text, uuid};
use crmkit_core::store::{BoxFuture, Row, Value};
use crmkit_core::{ContactId, Error, Result, RuleId, TenantId, UserId};
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

/// Whom a notification goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Recipient {
    /// A user of the tenant: the host looks up their address for the channel.
    User {
        /// The user.
        user: UserId,
    },
    /// A contact (a customer), with the address for the channel as the contact had it
    /// when the rule ran.
    Contact {
        /// The contact.
        contact: ContactId,
        /// Their name (first and last).
        name: String,
        /// Their email address (channel email) or phone number in E.164 (sms).
        address: String,
    },
}

impl Recipient {
    /// The user, when a user is notified.
    pub fn user(&self) -> Option<UserId> {
        match self {
            Recipient::User { user } => Some(*user),
            Recipient::Contact { .. } => None,
        }
    }

    /// The contact, when a contact is notified.
    pub fn contact(&self) -> Option<ContactId> {
        match self {
            Recipient::Contact { contact, .. } => Some(*contact),
            Recipient::User { .. } => None,
        }
    }

    /// As the outbox's `recipient` column holds it: a user's id, or the contact as JSON.
    fn to_column(&self) -> String {
        match self {
            Recipient::User { user } => user.as_uuid().to_string(),
            Recipient::Contact { .. } => {
                serde_json::to_string(self).unwrap_or_else(|_| unreachable!("plain data"))
            }
        }
    }

    fn from_column(s: &str) -> Option<Recipient> {
        if s.starts_with('{') {
            serde_json::from_str(s).ok()
        } else {
            Uuid::parse_str(s).ok().map(|u| Recipient::User {
                user: UserId::from_uuid(u),
            })
        }
    }
}

impl From<UserId> for Recipient {
    fn from(user: UserId) -> Self {
        Recipient::User { user }
    }
}

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
    /// Whom to notify: a user (the host looks up their address for the channel) or a
    /// contact (with their address).
    pub to: Recipient,
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
    /// A notification to a user or a contact.
    Notification {
        /// The channel.
        channel: Channel,
        /// Whom.
        to: Recipient,
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
                to.to_column(),
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
                to: Recipient::from_column(&recipient).ok_or_else(|| bad("recipient"))?,
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
    fn recipients_round_trip_through_their_column() {
        let user = Recipient::from(UserId::new());
        let contact = Recipient::Contact {
            contact: ContactId::new(),
            name: "Ada \"the\" Countess".into(),
            address: "ada@example.test".into(),
        };
        for r in [user.clone(), contact.clone()] {
            assert_eq!(Recipient::from_column(&r.to_column()), Some(r));
        }
        // A user is stored as their bare id, as before contacts could be notified.
        assert_eq!(user.to_column(), user.user().unwrap().as_uuid().to_string());
        assert_eq!(contact.user(), None);
        assert!(contact.contact().is_some());
        assert_eq!(Recipient::from_column("{\"kind\":\"martian\"}"), None);
        assert_eq!(Recipient::from_column("nope"), None);
    }

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
