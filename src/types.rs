//! Small validated types for rules that used to be written out at each place that needed them.
//! Each parses once, at the edge, and the rest of the code trusts the value.
//!
//! A leaf: it imports nothing of wagate's.

use std::fmt;

/// A Meta object ID (phone number, WABA, app, template …): 1 to 32 ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetaId(String);

impl MetaId {
    /// The longest ID accepted; Meta's are 15 to 17 digits today.
    pub const MAX_LEN: usize = 32;

    /// `Some` when `raw` is a Meta ID as is (no trimming).
    pub fn parse(raw: &str) -> Option<Self> {
        Self::is_valid(raw).then(|| Self(raw.to_owned()))
    }

    /// The check alone, for hot paths that only need a yes or no.
    pub fn is_valid(raw: &str) -> bool {
        !raw.is_empty() && raw.len() <= Self::MAX_LEN && raw.bytes().all(|b| b.is_ascii_digit())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MetaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Graph API version as Graph spells it in paths: `v23.0` (`v`, major, `.`, minor; each part
/// 1 to 3 digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GraphVersion {
    pub major: u16,
    pub minor: u16,
}

impl GraphVersion {
    pub fn parse(raw: &str) -> Option<Self> {
        let (major, minor) = raw.strip_prefix('v')?.split_once('.')?;
        let part = |p: &str| {
            (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
        };
        Some(Self {
            major: part(major)?,
            minor: part(minor)?,
        })
    }

    pub fn is_valid(raw: &str) -> bool {
        Self::parse(raw).is_some()
    }
}

impl fmt::Display for GraphVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

/// A CSS colour as setup-link themes take it: `#` and six hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexColour(String);

impl HexColour {
    pub fn parse(raw: &str) -> Option<Self> {
        Self::is_valid(raw).then(|| Self(raw.to_owned()))
    }

    pub fn is_valid(raw: &str) -> bool {
        raw.len() == 7 && raw.starts_with('#') && raw[1..].bytes().all(|b| b.is_ascii_hexdigit())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text made safe for an HTML element or a quoted attribute.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_ids() {
        for ok in ["1", "106540352242922", &"9".repeat(32)] {
            assert!(MetaId::is_valid(ok), "{ok}");
        }
        for bad in ["", " 1", "1a", "-1", &"9".repeat(33), "１"] {
            assert!(MetaId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn graph_versions() {
        for ok in ["v23.0", "v24.0", "v1.0", "v100.10"] {
            assert!(GraphVersion::is_valid(ok), "{ok}");
        }
        for bad in [
            "23.0", "v23", "v23.", "va.0", "v23.0.1", "", "V23.0", "v1000.0",
        ] {
            assert!(!GraphVersion::is_valid(bad), "{bad}");
        }
        assert_eq!(GraphVersion::parse("v23.0").unwrap().to_string(), "v23.0");
        assert!(GraphVersion::parse("v9.0") < GraphVersion::parse("v23.0"));
    }

    #[test]
    fn colours() {
        assert!(HexColour::is_valid("#3b82F6"));
        for bad in ["3b82f6", "#3b82f", "#3b82f6a", "#3b82fg", ""] {
            assert!(!HexColour::is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
