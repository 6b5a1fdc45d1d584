//! The vault's stable URLs: `/media/{id}` works with the project's `X-API-Key` (or the number's
//! own token) forever, and with the `expires`/`signature` query it carries for
//! `media.link_lifetime` without any credential (for an `<img>` tag, or a client that holds no
//! key). The signature is an HMAC under the link-signing key derived from the master key, over
//! the media id and the expiry, so a link names exactly one file until one time.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::crypto::SecretBox;

fn signed_bytes(id: Uuid, expires: i64) -> Vec<u8> {
    format!("wagate media link v1:{id}:{expires}").into_bytes()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// `{origin}/media/{id}?expires=…&signature=…`.
pub fn media_url(
    secrets: &SecretBox,
    origin: &str,
    id: Uuid,
    lifetime: std::time::Duration,
    now: DateTime<Utc>,
) -> String {
    let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(24));
    // Rounded to the minute so a page listed twice in a row gets the same URLs (browser caches).
    let expires = (now + lifetime).timestamp() / 60 * 60 + 60;
    let signature = b64().encode(secrets.sign_link(&signed_bytes(id, expires)));
    format!("{origin}/media/{id}?expires={expires}&signature={signature}")
}

/// Whether `signature` is this server's for `id` until `expires`, and `expires` is not past.
pub fn link_is_valid(
    secrets: &SecretBox,
    id: Uuid,
    expires: i64,
    signature: &str,
    now: DateTime<Utc>,
) -> bool {
    let Ok(claimed) = b64().decode(signature) else {
        return false;
    };
    expires >= now.timestamp()
        && crate::crypto::constant_time_eq(&secrets.sign_link(&signed_bytes(id, expires)), &claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_only_for_their_file() {
        let secrets = SecretBox::new(&[5u8; 32]);
        let now = Utc::now();
        let id = Uuid::now_v7();
        let url = media_url(
            &secrets,
            "https://w.example",
            id,
            std::time::Duration::from_secs(3600),
            now,
        );
        let query: std::collections::HashMap<String, String> = url::Url::parse(&url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let expires: i64 = query["expires"].parse().unwrap();
        let signature = &query["signature"];
        assert!(link_is_valid(&secrets, id, expires, signature, now));
        assert!(!link_is_valid(
            &secrets,
            Uuid::now_v7(),
            expires,
            signature,
            now
        ));
        assert!(!link_is_valid(&secrets, id, expires + 60, signature, now));
        let later = now + chrono::Duration::hours(2);
        assert!(!link_is_valid(&secrets, id, expires, signature, later));
        let other = SecretBox::new(&[6u8; 32]);
        assert!(!link_is_valid(&other, id, expires, signature, now));
    }
}
