//! kubo RPC arguments: the query string's repeated `arg`s and boolean options, validated CIDs
//! and IPNS names, and the query of a command Tollgate sends to the node itself.

use std::borrow::Cow;

use crate::domain::decision::{Denial, DenyCode};

/// A request's query, parsed once.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `a=1&arg=x&arg=y` (percent-decoded).
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Query { pairs }
    }

    /// Renames kubo's short option names (`r` → `recursive`) as kubo does before reading
    /// them, then refuses an option given twice: kubo would read the first value and Tollgate
    /// the last, and the two must never disagree on a ledger decision.
    pub fn canonicalize(&mut self, aliases: &[(&str, &str)]) -> Result<(), Denial> {
        for (key, _) in &mut self.pairs {
            if let Some((_, long)) = aliases.iter().find(|(short, _)| short == key) {
                *key = long.to_string();
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (key, _) in &self.pairs {
            if key != "arg" && !seen.insert(key.as_str()) {
                return Err(bad(format!(
                    "option `{}` is given more than once",
                    shorten(key)
                )));
            }
        }
        Ok(())
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean option as kubo reads it (`true`, `false`, or present without a value = true).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, Denial> {
        match self.get(name) {
            None => Ok(default),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(bad(format!(
                "option `{name}` must be true or false, not `{other}`"
            ))),
        }
    }

    /// The `arg`s as CIDs (an `/ipfs/` prefix is accepted and dropped); at least one.
    pub fn cids(&self) -> Result<Vec<String>, Denial> {
        let args = self.all("arg");
        if args.is_empty() {
            return Err(bad("argument `arg` (a CID) is required"));
        }
        args.into_iter().map(cid).collect()
    }
}

/// A CID given as `Qm...`, `bafy...` (any multibase) or `/ipfs/<cid>`, in its canonical text:
/// CIDv0 in base58btc, CIDv1 in lowercase base32. The node keys pins by the CID's bytes, so one
/// CID has many spellings (`bafy...`, `BAFY...`, `z...`, `f...`); the ledger must key them all
/// alike, or one account could unpin another's CID through a second spelling. Paths below a
/// CID and IPNS paths are refused: the ledger is keyed by CID.
pub fn cid(arg: &str) -> Result<String, Denial> {
    let bare = arg.strip_prefix("/ipfs/").unwrap_or(arg);
    let parsed = (bare.len() <= 256)
        .then(|| ::cid::Cid::try_from(bare).ok())
        .flatten();
    match parsed {
        Some(cid) => Ok(cid.to_string()),
        None => Err(bad(format!(
            "`{}` is not a CID; pin by CID (resolve paths first)",
            shorten(arg)
        ))),
    }
}

/// An IPNS name (kubo key name) as an account sees it.
pub fn name(arg: &str) -> Result<&str, Denial> {
    let ok = (1..=64).contains(&arg.len())
        && arg != "self"
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(arg)
    } else {
        Err(bad(format!(
            "`{}` is not a valid key name (1 to 64 of A-Z a-z 0-9 - _ ., not `self`)",
            shorten(arg)
        )))
    }
}

/// The query of a command Tollgate sends to the node.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, Cow<'a, str>)>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, &v);
    }
    out.finish()
}

/// A boolean option's value as kubo reads it.
pub fn bool_text(value: bool) -> Cow<'static, str> {
    Cow::Borrowed(if value { "true" } else { "false" })
}

/// A 400 denial with `message`.
pub fn bad(message: impl Into<Cow<'static, str>>) -> Denial {
    Denial::with_message(DenyCode::BadRequest, message)
}

/// At most 80 characters of client input, for messages.
fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V0: &str = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n";
    const V1: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

    #[test]
    fn repeated_args_and_flags() {
        let q = Query::parse(Some(&format!(
            "arg={V0}&arg=%2Fipfs%2F{V1}&recursive=false&p"
        )));
        assert_eq!(q.cids().unwrap(), vec![V0, V1]);
        assert!(!q.flag("recursive", true).unwrap());
        assert!(q.flag("p", false).unwrap());
        assert!(q.flag("missing", true).unwrap());
        assert!(q.flag("arg", true).is_err());
    }

    #[test]
    fn aliases_are_renamed_and_repeated_options_refused() {
        let mut q = Query::parse(Some("arg=a&arg=b&r=false"));
        q.canonicalize(&[("r", "recursive")]).unwrap();
        assert!(!q.flag("recursive", true).unwrap());
        let mut q = Query::parse(Some("pin=false&pin=true"));
        assert!(q.canonicalize(&[]).is_err());
        let mut q = Query::parse(Some("key=mine&k=self"));
        assert!(q.canonicalize(&[("k", "key")]).is_err());
    }

    #[test]
    fn every_spelling_of_a_cid_is_one_ledger_key() {
        assert_eq!(cid(&V1.to_uppercase()).unwrap(), V1);
        let cid_v1 = ::cid::Cid::try_from(V1).unwrap();
        let base58 = cid_v1
            .to_string_of_base(multibase::Base::Base58Btc)
            .unwrap();
        let base16 = cid_v1
            .to_string_of_base(multibase::Base::Base16Lower)
            .unwrap();
        assert!(base58.starts_with('z') && base16.starts_with('f'));
        assert_eq!(cid(&base58).unwrap(), V1);
        assert_eq!(cid(&base16).unwrap(), V1);
        // v0 and v1 of the same hash are different pins on the node: kept apart.
        assert_eq!(cid(V0).unwrap(), V0);
    }

    #[test]
    fn only_plain_cids_are_accepted() {
        for bad in [
            "/ipfs/QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n/sub/path",
            "/ipns/example.com",
            "Qm../../x",
            "short",
            "QmAbc%00defgh",
            "QmAbcdefgh1",
        ] {
            assert!(cid(bad).is_err(), "{bad}");
        }
        assert!(Query::parse(Some("recursive=true")).cids().is_err());
    }

    #[test]
    fn key_names() {
        assert!(name("blog-2.v1_x").is_ok());
        for bad in ["", "self", "a/b", "tg key", &"x".repeat(65)] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encode_escapes() {
        let q = encode([("arg", Cow::Borrowed("a b&c")), ("x", Cow::Borrowed("1"))]);
        assert_eq!(q, "arg=a+b%26c&x=1");
    }
}
