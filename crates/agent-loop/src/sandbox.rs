//! Landlock confinement for the shell tool.
//!
//! A process can only confine itself (and what it runs after), so the shell tool starts a
//! small helper, the program embedding this crate called with [`SANDBOX_ARG`]: it restricts
//! its own file-system rights with Landlock (read and execute everywhere, write only in the
//! folders named with `--write`, plus `/dev/null`), then `exec`s the command. `skd` is its own
//! helper (`skd __sandbox ...`, dispatched before anything else in `main`). The kernel feature
//! is best-effort: on a kernel without Landlock the command runs unconfined and the helper
//! says so on stderr; [`probe`] lets the caller warn once up front.

use std::ffi::OsString;
use std::path::PathBuf;

/// The first argument that turns the embedding program into the sandbox helper.
pub const SANDBOX_ARG: &str = "__sandbox";

/// How far the kernel enforced the confinement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Every requested restriction is in force.
    Full,
    /// Some are (an older Landlock ABI: some rights cannot be restricted).
    Partial,
    /// None: this kernel has no Landlock, or it is turned off.
    None,
}

/// The helper's command line: `[--write DIR]... -- PROGRAM ARGS...` (after [`SANDBOX_ARG`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperArgs {
    /// Folders the command may write in.
    pub write: Vec<PathBuf>,
    /// The program and its arguments (empty: only report the confinement, `--probe`).
    pub command: Vec<OsString>,
}

/// Reads the helper's arguments (those after [`SANDBOX_ARG`]).
pub fn parse_helper_args(args: impl IntoIterator<Item = OsString>) -> Result<HelperArgs, String> {
    let mut write = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--write") => write.push(PathBuf::from(args.next().ok_or("--write needs a folder")?)),
            Some("--probe") => return Ok(HelperArgs { write, command: Vec::new() }),
            Some("--") => return Ok(HelperArgs { write, command: args.collect() }),
            _ => {
                return Err(format!(
                    "unexpected argument {arg:?} (usage: {SANDBOX_ARG} [--write DIR]... -- PROGRAM ARGS...)"
                ));
            }
        }
    }
    Err("no command after --".into())
}

/// Confines this process (and what it runs later): read and execute everywhere, write only
/// beneath `write` and to `/dev/null`.
pub fn confine(write: &[PathBuf]) -> Result<Confinement, String> {
    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        path_beneath_rules,
    };
    let abi = ABI::V5;
    let write_paths: Vec<&std::path::Path> = write.iter().map(PathBuf::as_path).collect();
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(["/dev/null"], AccessFs::WriteFile | AccessFs::ReadFile)))
        .and_then(|r| r.add_rules(path_beneath_rules(&write_paths, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("Landlock: {e}"))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confinement::Full,
        RulesetStatus::PartiallyEnforced => Confinement::Partial,
        RulesetStatus::NotEnforced => Confinement::None,
    })
}

/// The helper's whole job: confine, then replace this process with the command. Returns
/// only on failure (an exit code for `main`). With `--probe` it prints the confinement
/// (`full`, `partial`, `none`) and exits 0.
pub fn run_helper(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args = match parse_helper_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skd sandbox: {e}");
            return 2;
        }
    };
    let confinement = match confine(&args.write) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skd sandbox: {e}");
            return 126;
        }
    };
    if args.command.is_empty() {
        println!(
            "{}",
            match confinement {
                Confinement::Full => "full",
                Confinement::Partial => "partial",
                Confinement::None => "none",
            }
        );
        return 0;
    }
    if confinement == Confinement::None {
        eprintln!("warning: this kernel does not enforce Landlock: the command is not confined to the workspace");
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&args.command[0]).args(&args.command[1..]).exec();
    eprintln!("skd sandbox: cannot run {:?}: {err}", args.command[0]);
    127
}

/// Asks the helper `program` how far this kernel confines commands.
pub async fn probe(program: &std::path::Path) -> Result<Confinement, String> {
    let out = tokio::process::Command::new(program)
        .arg(SANDBOX_ARG)
        .arg("--probe")
        .output()
        .await
        .map_err(|e| format!("{}: {e}", program.display()))?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "full" => Ok(Confinement::Full),
        "partial" => Ok(Confinement::Partial),
        "none" => Ok(Confinement::None),
        other => Err(format!("unexpected probe answer {other:?}: {}", String::from_utf8_lossy(&out.stderr).trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_arguments() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            parse_helper_args(os(&["--write", "/ws", "--", "sh", "-c", "ls"])),
            Ok(HelperArgs { write: vec!["/ws".into()], command: os(&["sh", "-c", "ls"]) })
        );
        assert_eq!(parse_helper_args(os(&["--probe"])), Ok(HelperArgs { write: vec![], command: vec![] }));
        assert!(parse_helper_args(os(&["--write"])).is_err());
        assert!(parse_helper_args(os(&["sh"])).is_err());
        assert!(parse_helper_args(os(&["--write", "/ws"])).is_err());
    }
}
