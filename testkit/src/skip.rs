//! The one rule for a test that cannot run on this machine.
//!
//! A test that needs root, network namespaces or a program that is missing is a
//! [`Skip::Environment`]: under `CI=true` it fails (panics with the reason), because a CI
//! run that skips it proves nothing; otherwise it prints one line
//! `SKIPPED <test>: <reason>` and returns. A test whose kernel lacks the feature it
//! exercises is a [`Skip::KernelFeature`]: the same line in any mode.
//!
//! The line is written straight to the process's stderr, past the test harness's output
//! capture, so it shows whether or not `--nocapture` was given, and appended to the file
//! named by `VG_SKIP_LOG` when that is set (`scripts/test.sh` lists and counts the lines
//! of that file).

use std::io::Write;

use crate::{find_command, is_root};

/// Why a test does not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// This machine or user cannot run it (not root, a program missing): a failure
    /// under `CI=true`, a skip otherwise.
    Environment(String),
    /// The kernel lacks the feature the test exercises: a skip in any mode.
    KernelFeature(String),
}

/// What a root or network-namespace test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Effective UID 0 (network namespaces, raw sockets, capabilities).
    Root,
    /// A program, found on `$PATH` or in the sbin and bin directories.
    Command(&'static str),
}

/// True if every need is met; otherwise [`skip`]s `test` with the first unmet need and
/// returns false (under `CI=true` it panics instead).
pub fn require(test: &str, needs: &[Need]) -> bool {
    for need in needs {
        let missing = match need {
            Need::Root => {
                (!is_root()).then(|| "needs root for network namespaces (run sudo ./scripts/test.sh)".to_owned())
            }
            Need::Command(name) => find_command(name).is_none().then(|| format!("needs the {name} command")),
        };
        if let Some(why) = missing {
            skip(test, Skip::Environment(why));
            return false;
        }
    }
    true
}

/// Reports that `test` does not run, by the rule in the module docs: panics under
/// `CI=true` for [`Skip::Environment`], else prints `SKIPPED <test>: <reason>`.
pub fn skip(test: &str, why: Skip) {
    match verdict(test, &why, under_ci()) {
        Verdict::Fail(msg) => panic!("{msg}"),
        Verdict::Skipped(line) => {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
            if let Some(path) = std::env::var_os(SKIP_LOG) {
                // One short write with O_APPEND: lines of parallel tests do not interleave.
                let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
                if let Err(e) = file.and_then(|mut f| f.write_all(format!("{line}\n").as_bytes())) {
                    panic!("{test}: cannot record the skip in {SKIP_LOG}={}: {e}", path.to_string_lossy());
                }
            }
        }
    }
}

/// The environment variable naming the file every skip line is appended to.
pub const SKIP_LOG: &str = "VG_SKIP_LOG";

/// True when the `CI` environment variable is `true`.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fail(String),
    Skipped(String),
}

fn verdict(test: &str, why: &Skip, ci: bool) -> Verdict {
    let (reason, fails) = match why {
        Skip::Environment(r) => (r, ci),
        Skip::KernelFeature(r) => (r, false),
    };
    // One line, whatever the reason holds.
    let reason = reason.replace(['\n', '\r'], " ");
    if fails {
        Verdict::Fail(format!("{test} cannot run under CI=true: {reason}"))
    } else {
        Verdict::Skipped(format!("SKIPPED {test}: {reason}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_skips_fail_under_ci_and_print_one_line_otherwise() {
        let why = Skip::Environment("needs root\nfor namespaces".into());
        assert_eq!(verdict("t", &why, false), Verdict::Skipped("SKIPPED t: needs root for namespaces".into()));
        assert_eq!(
            verdict("t", &why, true),
            Verdict::Fail("t cannot run under CI=true: needs root for namespaces".into())
        );
    }

    #[test]
    fn kernel_feature_skips_print_the_line_in_any_mode() {
        let why = Skip::KernelFeature("no UDP GSO on TUN".into());
        for ci in [false, true] {
            assert_eq!(verdict("gso", &why, ci), Verdict::Skipped("SKIPPED gso: no UDP GSO on TUN".into()));
        }
    }

    #[test]
    fn require_passes_when_nothing_is_needed_or_the_program_exists() {
        assert!(require("t", &[]));
        assert!(require("t", &[Need::Command("sh")]));
    }
}
