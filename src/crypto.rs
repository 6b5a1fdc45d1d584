//! Secrets at rest and in comparison: AES-256-GCM for access tokens, SHA-256 for lookups,
//! random API keys, constant-time equality.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix every project API key carries, so leaked keys are recognisable by scanners.
pub const API_KEY_PREFIX: &str = "wag_";
/// How many characters of a key are stored in clear for display (`wag_AbCd…`).
pub const API_KEY_DISPLAY_LEN: usize = 8;

/// Encrypts and decrypts secrets stored in the database (access tokens, webhook secrets).
///
/// Each ciphertext is `nonce (12 bytes) || AES-256-GCM(ciphertext + tag)`; the key id stored beside
/// it (first 8 hex digits of SHA-256 of the key) tells which master key sealed it, so a rotation can
/// find the rows still sealed with the old one.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    key_id: String,
    /// Key for signing short-lived links, derived from the master key (never the key itself).
    link_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("secret was sealed with master key {found}, but the configured key is {expected}")]
    WrongKey { found: String, expected: String },
    #[error("stored secret is corrupt or the master key is wrong")]
    Corrupt,
}

impl SecretBox {
    pub fn new(master_key: &[u8; 32]) -> Self {
        let key_id = hex::encode(&Sha256::digest(master_key)[..4]);
        let mut link = Sha256::new();
        link.update(b"wagate link signing v1");
        link.update(master_key);
        Self {
            cipher: Aes256Gcm::new(master_key.into()),
            key_id,
            link_key: link.finalize().into(),
        }
    }

    /// HMAC-SHA256 of `data` under the link-signing key.
    pub fn sign_link(&self, data: &[u8]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.link_key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(12 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, key_id: &str, sealed: &[u8]) -> Result<String, CryptoError> {
        if key_id != self.key_id {
            return Err(CryptoError::WrongKey {
                found: key_id.to_owned(),
                expected: self.key_id.clone(),
            });
        }
        if sealed.len() < 12 + 16 {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, body) = sealed.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| CryptoError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Corrupt)
    }
}

/// Lowercase hex SHA-256, the lookup key for API keys and access tokens.
pub fn sha256_hex(input: &[u8]) -> String {
    hex::encode(Sha256::digest(input))
}

/// Compares two secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the `X-Hub-Signature-256` value Meta sends and
/// wagate sends on forwarded webhooks.
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks an `X-Hub-Signature-256` header value (`sha256=<hex>`, hex in either case) against a
/// body, comparing the MACs in constant time.
pub fn verify_hub_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    use hmac::{Hmac, Mac};
    let header = header.trim();
    let Some(hex_mac) = header
        .get(..7)
        .filter(|prefix| prefix.eq_ignore_ascii_case("sha256="))
        .map(|_| &header[7..])
    else {
        return false;
    };
    let Ok(claimed) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&claimed).is_ok()
}

/// Random URL-safe string with `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine as _;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Hex characters of the checksum that ends every API key.
const API_KEY_CHECK_LEN: usize = 8;
/// `wag_` + 43 characters of randomness (32 bytes) + the checksum.
pub const API_KEY_LEN: usize = API_KEY_PREFIX.len() + 43 + API_KEY_CHECK_LEN;
/// `wag_` + 43 characters: the first keys, issued before checksums.
const API_KEY_BODY_LEN: usize = API_KEY_LEN - API_KEY_CHECK_LEN;

/// The key of API-key checksums: HMAC-SHA256 under a key derived from the master key (never the
/// master key itself), so every instance sharing the master key (and so the database) computes
/// the same checksums, and nobody without it can compute one: a key that was never issued is
/// refused without a lookup, however it was made.
#[derive(Clone)]
pub struct ApiKeyChecksum {
    key: [u8; 32],
}

impl std::fmt::Debug for ApiKeyChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyChecksum").finish_non_exhaustive()
    }
}

impl ApiKeyChecksum {
    pub fn new(master_key: &[u8; 32]) -> Self {
        let mut derive = Sha256::new();
        derive.update(b"wagate api key checksum v1");
        derive.update(master_key);
        Self {
            key: derive.finalize().into(),
        }
    }

    pub(crate) fn check(&self, body: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(body.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..API_KEY_CHECK_LEN / 2])
    }

    /// A new project API key: `wag_` + 32 random bytes + the keyed checksum of them. Secret
    /// scanners recognise the prefix; the checksum proves this server (or one sharing its master
    /// key) issued it.
    pub fn new_key(&self) -> String {
        let body = format!("{API_KEY_PREFIX}{}", random_token(32));
        let check = self.check(&body);
        body + &check
    }

    /// Whether `key` carries this server's checksum (compared in constant time).
    pub fn verify(&self, key: &str) -> bool {
        if key.len() != API_KEY_LEN || !api_key_body_shaped(key) {
            return false;
        }
        let (body, check) = key.split_at(API_KEY_BODY_LEN);
        constant_time_eq(self.check(body).as_bytes(), check.as_bytes())
    }
}

/// `wag_` + 43 URL-safe base64 characters: the part every key wagate ever issued starts with.
fn api_key_body_shaped(key: &str) -> bool {
    key.len() >= API_KEY_BODY_LEN
        && key.starts_with(API_KEY_PREFIX)
        && key.as_bytes()[API_KEY_PREFIX.len()..API_KEY_BODY_LEN]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// The unkeyed checksum of keys issued before the checksum was keyed: anyone can compute it, so
/// it only tells a typo of such a key from the key itself.
fn legacy_api_key_check(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..API_KEY_CHECK_LEN / 2])
}

/// Whether `key` is shaped like a key issued before keyed checksums: `wag_` + 43 characters, or
/// that + the unkeyed checksum. Such a key is only worth a lookup when a live legacy key has its
/// display prefix (`domain::auth` keeps that set).
pub fn api_key_legacy_shaped(key: &str) -> bool {
    if !api_key_body_shaped(key) {
        return false;
    }
    match key.len() {
        API_KEY_BODY_LEN => true,
        API_KEY_LEN => {
            let (body, check) = key.split_at(API_KEY_BODY_LEN);
            constant_time_eq(legacy_api_key_check(body).as_bytes(), check.as_bytes())
        }
        _ => false,
    }
}

/// Whether a Bearer token could be one wagate stored: the rule a number's `access_token` passes
/// at connect (one to `MAX_ACCESS_TOKEN_LEN` visible ASCII characters, as it becomes an
/// `Authorization` value). Anything else is refused before any lookup.
pub fn access_token_well_formed(token: &str) -> bool {
    (1..=MAX_ACCESS_TOKEN_LEN).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The longest access token a number may be connected with.
pub const MAX_ACCESS_TOKEN_LEN: usize = 4096;

/// What is kept of a key in clear, for listings.
pub fn api_key_display_prefix(key: &str) -> String {
    key.chars()
        .take(API_KEY_PREFIX.len() + API_KEY_DISPLAY_LEN)
        .collect()
}

/// A fresh 32-byte master key, base64, for first runs on SQLite.
pub fn new_master_key() -> String {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_carry_a_keyed_checksum() {
        let checksum = ApiKeyChecksum::new(&[3u8; 32]);
        let key = checksum.new_key();
        assert_eq!(key.len(), API_KEY_LEN);
        assert!(checksum.verify(&key));
        let mut typo = key.clone().into_bytes();
        let i = API_KEY_PREFIX.len() + 5;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        assert!(!checksum.verify(std::str::from_utf8(&typo).unwrap()));
        assert!(!checksum.verify(&key[..key.len() - 1]));
        assert!(!checksum.verify(&key.replace("wag_", "wax_")));
        // Another master key, or the unkeyed checksum anyone can compute: never ours.
        assert!(!ApiKeyChecksum::new(&[4u8; 32]).verify(&key));
        let body = &key[..API_KEY_BODY_LEN];
        let unkeyed = format!("{body}{}", legacy_api_key_check(body));
        assert!(!checksum.verify(&unkeyed));
        assert!(api_key_legacy_shaped(&unkeyed));
        assert!(api_key_legacy_shaped(body), "keys issued before checksums");
        assert!(
            !api_key_legacy_shaped(&key),
            "a keyed checksum is not the unkeyed one"
        );
        assert!(!api_key_legacy_shaped(&format!(
            "{}!",
            &body[..body.len() - 1]
        )));
    }

    #[test]
    fn access_tokens_are_visible_ascii_within_the_limit() {
        assert!(access_token_well_formed("EAAG-token_1.x"));
        assert!(!access_token_well_formed(""));
        assert!(!access_token_well_formed("two words"));
        assert!(!access_token_well_formed("tök"));
        assert!(!access_token_well_formed(
            &"a".repeat(MAX_ACCESS_TOKEN_LEN + 1)
        ));
    }

    #[test]
    fn seal_then_open_round_trips_and_nonces_differ() {
        let secret_box = SecretBox::new(&[1u8; 32]);
        let a = secret_box.seal("EAAG-token");
        let b = secret_box.seal("EAAG-token");
        assert_ne!(a, b, "each seal uses a fresh nonce");
        assert_eq!(
            secret_box.open(secret_box.key_id(), &a).unwrap(),
            "EAAG-token"
        );
    }

    #[test]
    fn open_rejects_other_key_and_tampering() {
        let one = SecretBox::new(&[1u8; 32]);
        let two = SecretBox::new(&[2u8; 32]);
        let mut sealed = one.seal("x");
        assert!(matches!(
            two.open(one.key_id(), &sealed),
            Err(CryptoError::WrongKey { .. })
        ));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(
            one.open(one.key_id(), &sealed),
            Err(CryptoError::Corrupt)
        ));
    }

    #[test]
    fn api_keys_have_prefix_and_display_part() {
        let key = ApiKeyChecksum::new(&[1u8; 32]).new_key();
        assert!(key.starts_with("wag_"));
        assert!(key.len() > 40);
        assert_eq!(api_key_display_prefix(&key).len(), 12);
        assert!(constant_time_eq(key.as_bytes(), key.as_bytes()));
        assert!(!constant_time_eq(b"a", b"b"));
    }
}
