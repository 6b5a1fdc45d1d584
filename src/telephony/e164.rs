//! E.164 numbers as provisioning shows them: the country's dial code, the international display
//! form (`+1 415-555-0123`) and the area code, from libphonenumber's metadata (`phonenumber`).

use phonenumber::metadata::DATABASE;
use phonenumber::Mode;

/// A parsed E.164 number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E164 {
    /// `+` and 8 to 15 digits.
    pub e164: String,
    /// The country calling code, e.g. `1` or `56`.
    pub dial_code: u16,
    /// International format, e.g. `+1 415-555-0123`.
    pub display: String,
    /// The area code where the numbering plan has one wagate knows (the NANP's three digits).
    pub area_code: Option<String>,
}

/// `raw` as an E.164 number: `+` then 8–15 digits (spaces, dashes and dots allowed in between).
pub fn parse(raw: &str) -> Option<E164> {
    let raw = raw.trim();
    let rest = raw.strip_prefix('+')?;
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
    {
        return None;
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return None;
    }
    let e164 = format!("+{digits}");
    let number = phonenumber::parse(None, &e164).ok()?;
    let dial_code = number.code().value();
    let display = number.format().mode(Mode::International).to_string();
    let national = number.national().value().to_string();
    let area_code = (dial_code == 1 && national.len() == 10).then(|| national[..3].to_owned());
    Some(E164 {
        e164,
        dial_code,
        display,
        area_code,
    })
}

/// The calling code of an ISO 3166 alpha-2 country (`US` → 1, `CL` → 56).
pub fn dial_code(country_iso: &str) -> Option<u16> {
    DATABASE
        .by_id(&country_iso.to_ascii_uppercase())
        .map(|m| m.country_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let us = parse("+1 415 555 0123").unwrap();
        assert_eq!(us.e164, "+14155550123");
        assert_eq!(us.dial_code, 1);
        assert_eq!(us.area_code.as_deref(), Some("415"));
        assert!(us.display.starts_with("+1 415"), "{}", us.display);
        let cl = parse("+56912345678").unwrap();
        assert_eq!(cl.dial_code, 56);
        assert_eq!(cl.area_code, None);
        for bad in [
            "14155550123",
            "+1",
            "+0123456789",
            "+1415abc0123",
            "+1234567890123456",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert_eq!(dial_code("us"), Some(1));
        assert_eq!(dial_code("CL"), Some(56));
        assert_eq!(dial_code("GB"), Some(44));
        assert_eq!(dial_code("XX"), None);
    }
}
