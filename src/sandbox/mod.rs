//! `wagate sandbox`: a local stand-in for Meta's Graph API (being written).
