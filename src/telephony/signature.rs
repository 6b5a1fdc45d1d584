//! Twilio's request signature (`X-Twilio-Signature`), as Twilio documents it under "Webhooks
//! security": base64 of HMAC-SHA1, keyed with the account's auth token, over the full URL Twilio
//! called (query included) followed by every POST parameter, sorted by name, as name then value.
//! The sandbox's Twilio double signs with [`sign`]; wagate's inbound endpoints check with
//! [`verify`].

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The string Twilio signs: `url` then each parameter as `name` + `value`, sorted by name (and,
/// for a repeated name, by value).
fn signed_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut out = String::with_capacity(url.len() + params.len() * 24);
    out.push_str(url);
    for (name, value) in sorted {
        out.push_str(name);
        out.push_str(value);
    }
    out
}

/// The `X-Twilio-Signature` value for a form POST of `params` to `url`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(signed_string(url, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `header` is the signature of this request, compared in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], header: &str) -> bool {
    let Ok(claimed) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(signed_string(url, params).as_bytes());
    mac.verify_slice(&claimed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Twilio's published example (its security docs and every official helper library's tests):
    /// auth token `12345`, this URL and these parameters sign to `RSOYDt4T1cUTdK1PDd93/VVr8B8=`.
    #[test]
    fn matches_twilios_published_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        // Deliberately out of order: the signature sorts them.
        let params = pairs(&[
            ("From", "+14158675309"),
            ("Digits", "1234"),
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
        ]);
        assert_eq!(sign("12345", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(verify(
            "12345",
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!verify(
            "12346",
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!verify(
            "12345",
            &format!("{url}&x=1"),
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let mut tampered = params.clone();
        tampered[1].1 = "9999".into();
        assert!(!verify(
            "12345",
            url,
            &tampered,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!verify("12345", url, &params, "not base64!"));
        assert!(!verify("12345", url, &params, ""));
    }
}
