//! The closed sets of states wagate itself assigns, as enums. Each is stored as text and
//! serialised with the same strings as before, so rows, wire shapes and SQL are unchanged.
//!
//! A message's and a call's status are Meta's words (`played`, and whatever a call ends with),
//! kept as text in the rows.

use std::fmt;
use std::str::FromStr;

/// A stored or received value that is not one of an enum's strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{value}'")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// Declares a text-backed enum: `as_str`, `FromStr`, `Display`, serde and sqlx (as text, on any
/// backend whose `&str` encodes and decodes) all use the listed strings.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(value: &str) -> Result<Self, UnknownValue> {
                match value {
                    $($wire => Ok($name::$variant),)+
                    other => Err(UnknownValue {
                        kind: stringify!($name),
                        value: other.to_owned(),
                    }),
                }
            }
        }

        /// Compares with the stored string (`row.status == "active"` reads as before).
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'q str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&'r str as sqlx::Decode<'r, DB>>::decode(value)?.parse()?)
            }
        }
    };
}

text_enum!(
    /// Which way a message or call went.
    Direction {
        Inbound => "inbound",
        Outbound => "outbound",
    }
);

text_enum!(
    /// Where a message is in wagate's own handling (forwarding to the customer's webhook).
    ProcessingStatus {
        Pending => "pending",
        Processing => "processing",
        Completed => "completed",
        Failed => "failed",
    }
);

text_enum!(
    /// One active conversation per contact; ending stamps `ended_at`.
    ConversationStatus {
        Active => "active",
        Ended => "ended",
    }
);

text_enum!(
    /// A webhook delivery in the outbox: due while `pending` or `failed`, final when `succeeded`
    /// or `dead`, held while `paused` (its webhook was paused after failures; resuming it makes
    /// them `pending`).
    DeliveryStatus {
        Pending => "pending",
        Failed => "failed",
        Succeeded => "succeeded",
        Dead => "dead",
        Paused => "paused",
    }
);

impl DeliveryStatus {
    /// Whether the delivery will be attempted (again).
    pub fn is_due_state(self) -> bool {
        matches!(self, DeliveryStatus::Pending | DeliveryStatus::Failed)
    }
}
