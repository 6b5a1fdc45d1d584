//! `fields=kapso(…)` (design §5): which `kapso` extension fields an object carries.

use std::collections::BTreeSet;

/// The selection a request made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KapsoFields {
    /// `fields` absent: messages carry the default set, other objects none.
    Unspecified,
    /// `kapso()`: no `kapso` block.
    None,
    /// `kapso(default)`, `kapso(*)`, `kapso(all)`, also with other names (`kapso(default,x)`).
    All,
    /// `kapso(a,b)`: only these (unknown names are ignored: newer SDKs may know more).
    Only(BTreeSet<String>),
}

impl KapsoFields {
    /// Whether `name` is included, given the object's default when `fields` was absent.
    pub fn includes(&self, name: &str, default_on: bool) -> bool {
        match self {
            Self::Unspecified => default_on,
            Self::None => false,
            Self::All => true,
            Self::Only(names) => names.contains(name),
        }
    }

    /// Whether any `kapso` block is wanted at all.
    pub fn wants_block(&self, default_on: bool) -> bool {
        match self {
            Self::Unspecified => default_on,
            Self::None => false,
            Self::All => true,
            Self::Only(names) => !names.is_empty(),
        }
    }
}

/// Parses the (already percent-decoded) `fields` value. Other top-level fields are allowed and
/// ignored (the objects are returned whole); a malformed `kapso(` group is an error.
pub fn parse(fields: Option<&str>) -> Result<KapsoFields, String> {
    let Some(fields) = fields.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(KapsoFields::Unspecified);
    };
    let Some(start) = fields.find("kapso") else {
        return Ok(KapsoFields::Unspecified);
    };
    let rest = &fields[start + "kapso".len()..];
    let Some(inner) = rest.strip_prefix('(') else {
        return Err(
            "fields: expected kapso(...), e.g. kapso(default) or kapso(direction,status)".into(),
        );
    };
    let Some(end) = inner.find(')') else {
        return Err("fields: kapso( is not closed with )".into());
    };
    let inner = &inner[..end];
    if inner.contains('(') {
        return Err("fields: nested parentheses are not allowed inside kapso(...)".into());
    }
    let names: BTreeSet<String> = inner
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = names.iter().find(|n| {
        !n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'*')
    }) {
        return Err(format!("fields: '{bad}' is not a field name"));
    }
    // `default` (or `*`, `all`) alongside other names is the default set plus those: every
    // field wagate has (kapso(default,x), as Kapso's docs write it).
    let everything = names
        .iter()
        .any(|n| ["default", "*", "all"].contains(&n.as_str()));
    Ok(if names.is_empty() {
        KapsoFields::None
    } else if everything {
        KapsoFields::All
    } else {
        KapsoFields::Only(names)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(parse(None).unwrap(), KapsoFields::Unspecified);
        assert_eq!(parse(Some("kapso()")).unwrap(), KapsoFields::None);
        for all in [
            "kapso(default)",
            "kapso(*)",
            "kapso(all)",
            "kapso(default,flow_response)",
            "kapso(direction, all)",
        ] {
            assert_eq!(parse(Some(all)).unwrap(), KapsoFields::All);
        }
        let only = parse(Some("kapso(direction, status,direction)")).unwrap();
        assert!(only.includes("status", false) && !only.includes("content", true));
        assert!(parse(Some("kapso(")).is_err());
        assert!(parse(Some("kapso")).is_err());
        assert!(parse(Some("kapso(a(b))")).is_err());
        assert!(parse(Some("kapso(a;b)")).is_err());
        assert_eq!(
            parse(Some("id,timestamp")).unwrap(),
            KapsoFields::Unspecified
        );
    }
}
