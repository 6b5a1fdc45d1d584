//! Secrets at rest and in comparison: AES-256-GCM for access tokens, SHA-256 for lookups,
//! random API keys, constant-time equality.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// Prefix every project API key carries, so leaked keys are recognisable by scanners.
pub const API_KEY_PREFIX: &str = "wag_";
/// How many characters of a key are stored in clear for display (`wag_AbCd…`).
pub const API_KEY_DISPLAY_LEN: usize = 8;

/// The sealed columns wagate has. A ciphertext is bound to one of them and to its row (the AES-GCM
/// associated data), so a value copied into another column or row, by mistake or by someone with
/// write access to the database, does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealedField {
    /// `phone_numbers.access_token_sealed`
    AccessToken,
    /// `phone_numbers.webhook_secret_sealed`
    WebhookSecret,
    /// `phone_numbers.webhook_verify_token_sealed`
    WebhookVerifyToken,
    /// `setup_links.token_sealed`
    SetupLinkToken,
    /// `webhooks.secret_sealed` (a kapso webhook's `secret_key`)
    WebhookKey,
    /// `phone_number_providers.auth_token_sealed` (a project's Twilio auth token)
    ProviderToken,
}

impl SealedField {
    pub const ALL: [SealedField; 6] = [
        SealedField::AccessToken,
        SealedField::WebhookSecret,
        SealedField::WebhookVerifyToken,
        SealedField::SetupLinkToken,
        SealedField::WebhookKey,
        SealedField::ProviderToken,
    ];

    pub fn table(self) -> &'static str {
        match self {
            Self::SetupLinkToken => "setup_links",
            Self::WebhookKey => "webhooks",
            Self::ProviderToken => "phone_number_providers",
            _ => "phone_numbers",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token_sealed",
            Self::WebhookSecret => "webhook_secret_sealed",
            Self::WebhookVerifyToken => "webhook_verify_token_sealed",
            Self::SetupLinkToken => "token_sealed",
            Self::WebhookKey => "secret_sealed",
            Self::ProviderToken => "auth_token_sealed",
        }
    }

    /// The value of this column in the row whose primary key is `row`.
    pub fn at(self, row: Uuid) -> SealContext {
        SealContext { field: self, row }
    }
}

impl std::fmt::Display for SealedField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.table(), self.column())
    }
}

/// Where a sealed value lives: column and row (the row's primary key, which never changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealContext {
    pub field: SealedField,
    pub row: Uuid,
}

impl SealContext {
    fn associated_data(&self) -> String {
        format!("wagate:v2:{}:{}", self.field, self.row)
    }
}

/// First byte of a bound (v2) sealed value. Unbound (v1) values have no header: they start with
/// their random nonce, so one in 256 starts with this byte too; opening therefore never trusts
/// the header alone (see [`SecretBox::open`]).
const V2: u8 = 0x02;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_ID_LEN: usize = 4;
const V2_HEADER_LEN: usize = 1 + KEY_ID_LEN;

/// One master key: its cipher and its id (first 4 bytes of SHA-256 of the key, shown as hex).
struct MasterKey {
    cipher: Aes256Gcm,
    id: [u8; KEY_ID_LEN],
    id_hex: String,
}

impl MasterKey {
    fn new(key: &[u8; 32]) -> Self {
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&Sha256::digest(key)[..KEY_ID_LEN]);
        Self {
            cipher: Aes256Gcm::new(key.into()),
            id,
            id_hex: hex::encode(id),
        }
    }

    fn decrypt(&self, nonce_and_body: &[u8], aad: &[u8]) -> Option<String> {
        if nonce_and_body.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = nonce_and_body.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

/// Encrypts and decrypts secrets stored in the database (access tokens, webhook secrets,
/// setup-link tokens).
///
/// A sealed value is `0x02 || key id (4 bytes) || nonce (12 bytes) || AES-256-GCM(ciphertext +
/// tag)` with the associated data `wagate:v2:{table}.{column}:{row id}` ([`SealContext`]): it
/// names the key that sealed it and opens only in its own column and row. Values sealed before
/// that (v1: `nonce || ciphertext`, no associated data) still open, so an upgraded instance works
/// before the start-up pass re-seals them. New values are always sealed with the current master
/// key; `security.previous_master_keys` are only for opening, during a rotation.
#[derive(Clone)]
pub struct SecretBox {
    /// The current key first, then the previous ones.
    keys: Arc<[MasterKey]>,
    /// Key for signing short-lived links, derived from the current master key (never the key
    /// itself); links signed under a previous key stop verifying after a rotation.
    link_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_id", &self.key_id())
            .field(
                "previous_key_ids",
                &self.keys[1..].iter().map(|k| &k.id_hex).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("secret was sealed with master key {found}, which is neither the configured key {expected} nor one of security.previous_master_keys")]
    WrongKey { found: String, expected: String },
    #[error("stored secret is corrupt or the master key is wrong")]
    Corrupt,
    #[error("the value in {context} does not open there: it was sealed for another row or column (copied?), or it is corrupt")]
    NotBound { context: String },
}

/// How a stored value stands against the current key, for the re-seal passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedState {
    /// v1: not bound to its row; sealed with whichever key its key-id column names.
    Unbound,
    /// v2 under the current master key: nothing to do.
    Current,
    /// v2 under another key (a previous one, or one this instance does not know).
    OtherKey,
}

impl SecretBox {
    pub fn new(master_key: &[u8; 32]) -> Self {
        Self::with_previous(master_key, &[])
    }

    /// A box that seals with `master_key` and also opens values sealed with any of `previous`
    /// (a master-key rotation in progress).
    pub fn with_previous(master_key: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        let mut link = Sha256::new();
        link.update(b"wagate link signing v1");
        link.update(master_key);
        let keys: Vec<MasterKey> = std::iter::once(master_key)
            .chain(previous)
            .map(MasterKey::new)
            .collect();
        Self {
            keys: keys.into(),
            link_key: link.finalize().into(),
        }
    }

    /// HMAC-SHA256 of `data` under the link-signing key.
    pub fn sign_link(&self, data: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.link_key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The id of the current master key, stored beside what it seals.
    pub fn key_id(&self) -> &str {
        &self.keys[0].id_hex
    }

    /// Seals `plaintext` for the column and row `context` names, with the current master key.
    pub fn seal(&self, context: SealContext, plaintext: &str) -> Vec<u8> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = context.associated_data();
        let sealed = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(V2_HEADER_LEN + NONCE_LEN + sealed.len());
        out.push(V2);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value read from the column and row `context` names; `key_id` is the key-id column
    /// stored beside it (only unbound v1 values need it).
    ///
    /// A value whose header says v2 under a known key is opened as such; if that fails it is
    /// tried as v1 before giving up, since a v1 nonce may begin like a v2 header. AES-GCM's tag
    /// decides, so neither format is ever mistaken for the other.
    pub fn open(
        &self,
        context: SealContext,
        key_id: &str,
        sealed: &[u8],
    ) -> Result<String, CryptoError> {
        if let Some(key) = self.v2_key(sealed) {
            let aad = context.associated_data();
            if let Some(plain) = key.decrypt(&sealed[V2_HEADER_LEN..], aad.as_bytes()) {
                return Ok(plain);
            }
            return self
                .open_v1(key_id, sealed)
                .map_err(|_| CryptoError::NotBound {
                    context: format!("{} of row {}", context.field, context.row),
                });
        }
        if sealed.first() == Some(&V2) && sealed.len() >= V2_HEADER_LEN + NONCE_LEN + TAG_LEN {
            let found = hex::encode(&sealed[1..V2_HEADER_LEN]);
            return self
                .open_v1(key_id, sealed)
                .map_err(|_| CryptoError::WrongKey {
                    found,
                    expected: self.key_id().to_owned(),
                });
        }
        self.open_v1(key_id, sealed)
    }

    /// A v1 value: the key its key-id column names, else every key this box has (the shared
    /// `secrets_key_id` column may name the key of the other secret it covers).
    fn open_v1(&self, key_id: &str, sealed: &[u8]) -> Result<String, CryptoError> {
        let named = self.keys.iter().find(|k| k.id_hex == key_id);
        if let Some(plain) = named.and_then(|k| k.decrypt(sealed, b"")) {
            return Ok(plain);
        }
        if let Some(plain) = self.keys.iter().find_map(|k| k.decrypt(sealed, b"")) {
            return Ok(plain);
        }
        match named {
            Some(_) => Err(CryptoError::Corrupt),
            None => Err(CryptoError::WrongKey {
                found: key_id.to_owned(),
                expected: self.key_id().to_owned(),
            }),
        }
    }

    /// The known key a v2 header names, if the value has one.
    fn v2_key(&self, sealed: &[u8]) -> Option<&MasterKey> {
        if sealed.len() < V2_HEADER_LEN + NONCE_LEN + TAG_LEN || sealed[0] != V2 {
            return None;
        }
        self.keys
            .iter()
            .find(|k| k.id[..] == sealed[1..V2_HEADER_LEN])
    }

    /// Whether a stored value is bound and under the current key, from its header alone (cheap;
    /// a v1 value that happens to look current is still opened correctly, it is just left as v1).
    pub fn state(&self, sealed: &[u8]) -> SealedState {
        if sealed.len() < V2_HEADER_LEN + NONCE_LEN + TAG_LEN || sealed[0] != V2 {
            return SealedState::Unbound;
        }
        match self
            .keys
            .iter()
            .position(|k| sealed[1..V2_HEADER_LEN] == k.id[..])
        {
            Some(0) => SealedState::Current,
            Some(_) => SealedState::OtherKey,
            // No key here has that id: a v2 value under a key this instance lacks, or a v1 value
            // whose random nonce begins with the v2 marker (one in 256 of them), which opens as
            // v1 and must be re-sealed like any other. A v1 nonce that also repeats one of the
            // keys' ids (one in 2^40) is taken for v2; it still opens, through `open`'s fallback.
            None if self.keys.iter().any(|k| k.decrypt(sealed, b"").is_some()) => {
                SealedState::Unbound
            }
            None => SealedState::OtherKey,
        }
    }
}

/// Lowercase hex SHA-256, the lookup key for API keys and access tokens.
pub fn sha256_hex(input: &[u8]) -> String {
    hex::encode(sha256(input))
}

/// The SHA-256 digest itself, for in-memory lookups that need no text form.
pub fn sha256(input: &[u8]) -> [u8; 32] {
    Sha256::digest(input).into()
}

/// Compares two secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the `X-Hub-Signature-256` value Meta sends and
/// wagate sends on forwarded webhooks.
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// Lower-case hex HMAC-SHA256 of `body` (Kapso's `X-Webhook-Signature`: no `sha256=` prefix).
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks an `X-Hub-Signature-256` header value (`sha256=<hex>`, hex in either case) against a
/// body, comparing the MACs in constant time.
pub fn verify_hub_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
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
    /// HMAC states keyed with the current master key's checksum key first (new keys), then
    /// with those of `security.previous_master_keys` (keys issued before a rotation keep
    /// working). Keyed once: every authenticated request checks a key, and keying is half of
    /// an HMAC's work.
    keys: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for ApiKeyChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyChecksum").finish_non_exhaustive()
    }
}

impl ApiKeyChecksum {
    pub fn new(master_key: &[u8; 32]) -> Self {
        Self::with_previous(master_key, &[])
    }

    /// Mints with the current master key; also accepts keys minted under previous ones.
    pub fn with_previous(master_key: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        let derive = |master: &[u8; 32]| -> [u8; 32] {
            let mut derive = Sha256::new();
            derive.update(b"wagate api key checksum v1");
            derive.update(master);
            derive.finalize().into()
        };
        let keyed = |key: [u8; 32]| {
            <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes keys of any length")
        };
        Self {
            keys: std::iter::once(master_key)
                .chain(previous)
                .map(|master| keyed(derive(master)))
                .collect(),
        }
    }

    pub(crate) fn check(&self, body: &str) -> String {
        let check = Self::check_with(&self.keys[0], body);
        String::from_utf8(check.to_vec()).expect("hex is ASCII")
    }

    /// The checksum of `body` under `keyed`, as lowercase hex.
    fn check_with(keyed: &Hmac<Sha256>, body: &str) -> [u8; API_KEY_CHECK_LEN] {
        let mut mac = keyed.clone();
        mac.update(body.as_bytes());
        let mut hex = [0u8; API_KEY_CHECK_LEN];
        hex::encode_to_slice(
            &mac.finalize().into_bytes()[..API_KEY_CHECK_LEN / 2],
            &mut hex,
        )
        .expect("the buffer holds twice the bytes");
        hex
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
        self.keys
            .iter()
            .any(|k| constant_time_eq(&Self::check_with(k, body), check.as_bytes()))
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
        // After a rotation to [4; 32] with [3; 32] kept as previous, the key still verifies, and
        // new keys carry the new checksum only.
        let rotated = ApiKeyChecksum::with_previous(&[4u8; 32], &[[3u8; 32]]);
        assert!(rotated.verify(&key));
        assert!(!checksum.verify(&rotated.new_key()));
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

    fn row() -> Uuid {
        Uuid::now_v7()
    }

    /// A value as wagate sealed it before values were bound to their row (v1).
    fn seal_v1(key: &[u8; 32], plaintext: &str) -> Vec<u8> {
        let nonce = [7u8; NONCE_LEN];
        let mut out = nonce.to_vec();
        let cipher = Aes256Gcm::new(key.into());
        out.extend(
            cipher
                .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
                .unwrap(),
        );
        out
    }

    #[test]
    fn seal_then_open_round_trips_and_nonces_differ() {
        let secret_box = SecretBox::new(&[1u8; 32]);
        let at = SealedField::AccessToken.at(row());
        let a = secret_box.seal(at, "EAAG-token");
        let b = secret_box.seal(at, "EAAG-token");
        assert_ne!(a, b, "each seal uses a fresh nonce");
        assert_eq!(a[0], V2);
        assert_eq!(hex::encode(&a[1..5]), secret_box.key_id());
        assert_eq!(
            secret_box.open(at, secret_box.key_id(), &a).unwrap(),
            "EAAG-token"
        );
        assert_eq!(secret_box.state(&a), SealedState::Current);
    }

    #[test]
    fn sealed_values_open_only_in_their_own_column_and_row() {
        let secret_box = SecretBox::new(&[1u8; 32]);
        let id = row();
        let sealed = secret_box.seal(SealedField::AccessToken.at(id), "EAAG-token");
        for elsewhere in [
            SealedField::AccessToken.at(row()),
            SealedField::WebhookSecret.at(id),
            SealedField::SetupLinkToken.at(id),
        ] {
            let error = secret_box
                .open(elsewhere, secret_box.key_id(), &sealed)
                .unwrap_err();
            assert!(matches!(error, CryptoError::NotBound { .. }), "{error}");
            assert!(error.to_string().contains(elsewhere.field.column()));
        }
    }

    #[test]
    fn unbound_v1_values_still_open_and_are_reported_as_such() {
        let secret_box = SecretBox::new(&[1u8; 32]);
        let v1 = seal_v1(&[1u8; 32], "old-token");
        assert_eq!(secret_box.state(&v1), SealedState::Unbound);
        let at = SealedField::AccessToken.at(row());
        assert_eq!(
            secret_box.open(at, secret_box.key_id(), &v1).unwrap(),
            "old-token"
        );
        // A v1 nonce that begins like a v2 header of the current key still opens as v1.
        let mut lookalike = vec![V2];
        lookalike.extend_from_slice(&secret_box.keys[0].id);
        lookalike.extend_from_slice(&[9u8; NONCE_LEN - V2_HEADER_LEN]);
        let cipher = Aes256Gcm::new((&[1u8; 32]).into());
        let body = cipher
            .encrypt(Nonce::from_slice(&lookalike), b"tricky".as_slice())
            .unwrap();
        lookalike.extend(body);
        assert_eq!(
            secret_box
                .open(at, secret_box.key_id(), &lookalike)
                .unwrap(),
            "tricky"
        );
        // One v1 value in 256 begins with the v2 marker, before bytes no key's id has: still
        // reported unbound, so the start-up pass re-seals it.
        let mut nonce = [5u8; NONCE_LEN];
        nonce[0] = V2;
        let mut marked = nonce.to_vec();
        marked.extend(
            cipher
                .encrypt(Nonce::from_slice(&nonce), b"marked".as_slice())
                .unwrap(),
        );
        assert_eq!(secret_box.state(&marked), SealedState::Unbound);
        assert_eq!(
            secret_box.open(at, secret_box.key_id(), &marked).unwrap(),
            "marked"
        );
        // A v2 value under a key this instance does not have is not taken for v1.
        let other = SecretBox::new(&[2u8; 32]).seal(at, "theirs");
        assert_eq!(secret_box.state(&other), SealedState::OtherKey);
    }

    #[test]
    fn previous_keys_open_but_never_seal() {
        let old = SecretBox::new(&[1u8; 32]);
        let at = SealedField::WebhookSecret.at(row());
        let sealed_old = old.seal(at, "secret");
        let v1_old = seal_v1(&[1u8; 32], "v1-secret");
        let rolled = SecretBox::with_previous(&[2u8; 32], &[[1u8; 32]]);
        assert_ne!(rolled.key_id(), old.key_id());
        assert_eq!(
            rolled.open(at, old.key_id(), &sealed_old).unwrap(),
            "secret"
        );
        assert_eq!(rolled.open(at, old.key_id(), &v1_old).unwrap(), "v1-secret");
        assert_eq!(rolled.state(&sealed_old), SealedState::OtherKey);
        let sealed_new = rolled.seal(at, "secret");
        assert_eq!(rolled.state(&sealed_new), SealedState::Current);
        assert_eq!(&hex::encode(&sealed_new[1..5]), rolled.key_id());
        // Without the previous key: the key named in the header is reported.
        let new_only = SecretBox::new(&[2u8; 32]);
        let error = new_only.open(at, old.key_id(), &sealed_old).unwrap_err();
        assert!(
            matches!(&error, CryptoError::WrongKey { found, .. } if found == old.key_id()),
            "{error}"
        );
    }

    #[test]
    fn open_rejects_other_key_and_tampering() {
        let one = SecretBox::new(&[1u8; 32]);
        let two = SecretBox::new(&[2u8; 32]);
        let at = SealedField::AccessToken.at(row());
        let mut sealed = one.seal(at, "x");
        assert!(matches!(
            two.open(at, one.key_id(), &sealed),
            Err(CryptoError::WrongKey { .. })
        ));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(one.open(at, one.key_id(), &sealed).is_err());
        let mut v1 = seal_v1(&[1u8; 32], "x");
        let last = v1.len() - 1;
        v1[last] ^= 1;
        assert!(matches!(
            one.open(at, one.key_id(), &v1),
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
