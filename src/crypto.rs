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

fn api_key_check(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..API_KEY_CHECK_LEN / 2])
}

/// A new project API key: `wag_` + 32 random bytes + a checksum of them, so keys that were never
/// issued (typos, guesses, floods) are refused without a database lookup, and secret scanners
/// can recognise real ones.
pub fn new_api_key() -> String {
    let body = format!("{API_KEY_PREFIX}{}", random_token(32));
    let check = api_key_check(&body);
    body + &check
}

/// Whether `key` could be one wagate issued: its shape, and the checksum for current keys. Keys
/// issued before checksums (`wag_` + 43 characters) still pass on shape alone.
pub fn api_key_well_formed(key: &str) -> bool {
    let legacy = API_KEY_LEN - API_KEY_CHECK_LEN;
    if !key.starts_with(API_KEY_PREFIX) || !key.is_ascii() {
        return false;
    }
    match key.len() {
        n if n == API_KEY_LEN => {
            let (body, check) = key.split_at(legacy);
            constant_time_eq(api_key_check(body).as_bytes(), check.as_bytes())
        }
        n => n == legacy,
    }
}

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
    fn api_keys_carry_a_checksum() {
        let key = new_api_key();
        assert_eq!(key.len(), API_KEY_LEN);
        assert!(api_key_well_formed(&key));
        let mut typo = key.clone().into_bytes();
        let i = API_KEY_PREFIX.len() + 5;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        assert!(!api_key_well_formed(std::str::from_utf8(&typo).unwrap()));
        assert!(!api_key_well_formed(&key[..key.len() - 1]));
        assert!(!api_key_well_formed(&key.replace("wag_", "wax_")));
        let legacy = format!("{API_KEY_PREFIX}{}", random_token(32));
        assert!(
            api_key_well_formed(&legacy),
            "keys issued before checksums still work"
        );
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
        let key = new_api_key();
        assert!(key.starts_with("wag_"));
        assert!(key.len() > 40);
        assert_eq!(api_key_display_prefix(&key).len(), 12);
        assert!(constant_time_eq(key.as_bytes(), key.as_bytes()));
        assert!(!constant_time_eq(b"a", b"b"));
    }
}
