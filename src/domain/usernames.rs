//! Business usernames: Meta's format rules (contract.md §8.2), shared by the gateway, which
//! checks a claim before Meta is called (design §9), and the emulator, which answers like Meta.
//!
//! Rules: 3–35 characters; English letters, digits, `.` and `_` only; at least one letter; no
//! leading or trailing period; no `..`; not starting with `www`; not ending with a domain suffix.
//! Case is ignored when comparing (so `WWW` and `.COM` break the rules too, and two names that
//! differ only in case are the same name); `.` and `_` are distinct characters.

/// Endings that make a username look like a web address. The common generic domains and the
/// country domains most often used as generic ones.
pub const DOMAIN_SUFFIXES: [&str; 40] = [
    ".com", ".org", ".net", ".io", ".ai", ".co", ".app", ".dev", ".info", ".biz", ".me", ".us",
    ".uk", ".eu", ".de", ".fr", ".es", ".it", ".nl", ".br", ".in", ".ca", ".au", ".mx", ".ar",
    ".cl", ".xyz", ".online", ".site", ".shop", ".store", ".tech", ".gov", ".edu", ".mil", ".tv",
    ".gg", ".ly", ".cc", ".ws",
];

/// The values `transfer_action` may take.
pub const TRANSFER_ACTIONS: [&str; 2] = ["none", "force_transfer"];

/// Which rule a username breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Length,
    Characters,
    NoLetter,
    EdgePeriod,
    DoublePeriod,
    Www,
    DomainSuffix,
}

impl Problem {
    /// The rule, as a sentence fragment after the parameter name.
    pub fn describe(self) -> &'static str {
        match self {
            Problem::Length => "must be 3 to 35 characters long",
            Problem::Characters => {
                "may only contain English letters, digits, periods (.) and underscores (_)"
            }
            Problem::NoLetter => "must contain at least one letter",
            Problem::EdgePeriod => "must not start or end with a period",
            Problem::DoublePeriod => "must not contain two periods in a row",
            Problem::Www => "must not start with www",
            Problem::DomainSuffix => {
                "must not end with a domain suffix such as .com, .org, .net, .io or .ai"
            }
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// The first rule `username` breaks, if any. The name is checked as given (no `@` stripped, no
/// trimming): what is checked is what Meta receives.
pub fn problem(username: &str) -> Option<Problem> {
    let len = username.chars().count();
    if !(3..=35).contains(&len) {
        return Some(Problem::Length);
    }
    if !username
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
    {
        return Some(Problem::Characters);
    }
    if !username.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Some(Problem::NoLetter);
    }
    if username.starts_with('.') || username.ends_with('.') {
        return Some(Problem::EdgePeriod);
    }
    if username.contains("..") {
        return Some(Problem::DoublePeriod);
    }
    let lower = username.to_ascii_lowercase();
    if lower.starts_with("www") {
        return Some(Problem::Www);
    }
    if DOMAIN_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
        return Some(Problem::DomainSuffix);
    }
    None
}

/// Whether two usernames are the same name (case is ignored; `.` and `_` are not folded).
pub fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `transfer_action` is `none` (the default) or `force_transfer`, exactly.
pub fn is_transfer_action(value: &str) -> bool {
    TRANSFER_ACTIONS.contains(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        for ok in [
            "abc",
            "kapso_support",
            "kapso.ai.team",
            "Kapso_Support",
            "a1_",
            "_a_",
            "x".repeat(35).as_str(),
            "1a2",
            "shop.comics",
            "kapso_com",
            "my.www",
            "the.io_team",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn rejected() {
        let cases = [
            ("ab", Problem::Length),
            ("", Problem::Length),
            (&"x".repeat(36), Problem::Length),
            ("kapso-x", Problem::Characters),
            ("@kapso", Problem::Characters),
            ("kap so", Problem::Characters),
            ("kapsó", Problem::Characters),
            ("1234", Problem::NoLetter),
            ("1_2.3", Problem::NoLetter),
            (".kapso", Problem::EdgePeriod),
            ("kapso.", Problem::EdgePeriod),
            ("kap..so", Problem::DoublePeriod),
            ("wwwkapso", Problem::Www),
            ("WWW.kapso", Problem::Www),
            ("kapso.com", Problem::DomainSuffix),
            ("kapso.COM", Problem::DomainSuffix),
            ("kapso.org", Problem::DomainSuffix),
            ("kapso.net", Problem::DomainSuffix),
            ("kapso.io", Problem::DomainSuffix),
            ("kapso.ai", Problem::DomainSuffix),
            ("kapso.dev", Problem::DomainSuffix),
        ];
        for (name, expected) in cases {
            assert_eq!(problem(name), Some(expected), "{name}");
        }
    }

    #[test]
    fn comparisons_ignore_case_only() {
        assert!(same("Kapso_Support", "kapso_support"));
        assert!(!same("kapso.support", "kapso_support"));
        assert!(is_transfer_action("none"));
        assert!(is_transfer_action("force_transfer"));
        assert!(!is_transfer_action("FORCE_TRANSFER"));
        assert!(!is_transfer_action("transfer"));
    }
}
