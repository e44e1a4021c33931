//! Which kubo RPC commands go through the ledger, read from the normalised path, and the
//! pinning options of other commands that would slip past it.

use http::Method;

use super::args::{Query, bad};
use crate::domain::decision::Denial;

/// A kubo command the gateway handles itself (around or instead of forwarding it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `add`: forwarded; with `pin=true` (kubo's default) the root is recorded in the ledger.
    Add,
    PinAdd,
    PinRm,
    PinUpdate,
    /// Answered from the ledger: an account sees its own pins only.
    PinLs,
    KeyGen,
    KeyList,
    KeyRm,
    KeyRename,
    NamePublish,
}

const COMMANDS: [(&str, Command); 10] = [
    ("/api/v0/add", Command::Add),
    ("/api/v0/pin/add", Command::PinAdd),
    ("/api/v0/pin/rm", Command::PinRm),
    ("/api/v0/pin/update", Command::PinUpdate),
    ("/api/v0/pin/ls", Command::PinLs),
    ("/api/v0/key/gen", Command::KeyGen),
    ("/api/v0/key/list", Command::KeyList),
    ("/api/v0/key/rm", Command::KeyRm),
    ("/api/v0/key/rename", Command::KeyRename),
    ("/api/v0/name/publish", Command::NamePublish),
];

/// kubo's short names of the options Tollgate reads, per command.
fn aliases(command: Command) -> &'static [(&'static str, &'static str)] {
    match command {
        Command::Add => &[
            ("n", "only-hash"),
            ("q", "quiet"),
            ("Q", "quieter"),
            ("enc", "encoding"),
        ],
        Command::PinAdd | Command::PinRm => &[("r", "recursive")],
        Command::PinLs => &[("t", "type"), ("s", "stream"), ("q", "quiet")],
        Command::KeyGen => &[("t", "type"), ("s", "size")],
        Command::KeyList => &[],
        Command::KeyRename => &[("f", "force")],
        Command::NamePublish => &[("k", "key"), ("Q", "quieter")],
        Command::PinUpdate | Command::KeyRm => &[],
    }
}

/// Commands that can pin as a side effect, the option that does it and its kubo default.
const PINNING_OPTIONS: [(&str, &str, bool); 4] = [
    ("/api/v0/dag/put", "pin", false),
    ("/api/v0/block/put", "pin", false),
    ("/api/v0/object/put", "pin", false),
    ("/api/v0/dag/import", "pin-roots", true),
];

/// The ledger command at `path`, if any. Refuses extra path segments after a ledger command
/// (kubo would read them as arguments the ledger never saw) and pinning options of other
/// commands (a pin the ledger does not hold would count against no plan).
pub fn parse(method: &Method, path: &str, query: &mut Query) -> Result<Option<Command>, Denial> {
    for (prefix, option, default) in PINNING_OPTIONS {
        if !runs(path, prefix) {
            continue;
        }
        query.canonicalize(&[])?;
        if query.flag(option, default)? {
            return Err(bad(format!(
                "`{option}=true` is not available through the gateway: send `{option}=false` \
                 and pin the result with pin/add, so it counts against the plan"
            )));
        }
    }
    for (command_path, command) in COMMANDS {
        if path == command_path {
            if method != Method::POST {
                return Err(bad("kubo RPC commands are called with POST"));
            }
            query.canonicalize(aliases(command))?;
            return Ok(Some(command));
        }
        if runs(path, command_path) {
            return Err(bad(format!(
                "arguments of {} go in the query string (`?arg=...`), not in the path",
                &command_path["/api/v0/".len()..]
            )));
        }
    }
    Ok(None)
}

/// Whether kubo runs `command` for `path` (the command itself or with extra segments).
fn runs(path: &str, command: &str) -> bool {
    path.strip_prefix(command)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(path: &str, query: &str) -> Result<Option<Command>, Denial> {
        parse(&Method::POST, path, &mut Query::parse(Some(query)))
    }

    #[test]
    fn ledger_commands_need_post_and_single_options() {
        let mut q = Query::parse(None);
        assert!(parse(&Method::GET, "/api/v0/pin/add", &mut q).is_err());
        assert!(parse_str("/api/v0/add", "pin=false&pin=true").is_err());
        assert!(parse_str("/api/v0/dag/put", "pin=false&pin=true").is_err());
        assert!(parse_str("/api/v0/name/publish", "key=a&k=self").is_err());
        assert!(parse_str("/api/v0/add", "encoding=json&enc=xml").is_err());
    }

    #[test]
    fn ledger_commands_by_exact_path() {
        assert_eq!(parse_str("/api/v0/pin/add", ""), Ok(Some(Command::PinAdd)));
        assert_eq!(
            parse_str("/api/v0/add", "pin=false"),
            Ok(Some(Command::Add))
        );
        assert_eq!(parse_str("/api/v0/cat", ""), Ok(None));
        assert_eq!(parse_str("/api/v0/pin/addx", ""), Ok(None));
    }

    #[test]
    fn arguments_in_the_path_are_refused() {
        assert!(parse_str("/api/v0/pin/rm/QmSomeoneElses", "").is_err());
        assert!(parse_str("/api/v0/key/gen/name", "").is_err());
    }

    #[test]
    fn pinning_side_effects_are_refused() {
        assert!(parse_str("/api/v0/dag/put", "pin=true").is_err());
        assert!(parse_str("/api/v0/block/put", "pin").is_err());
        assert!(
            parse_str("/api/v0/dag/import", "").is_err(),
            "pins roots by default"
        );
        assert!(parse_str("/api/v0/dag/import/x", "").is_err());
        assert_eq!(parse_str("/api/v0/dag/import", "pin-roots=false"), Ok(None));
        assert_eq!(parse_str("/api/v0/dag/put", ""), Ok(None));
    }
}
