//! The command line of a Tidewell program: `--help` that says what it does and lists the
//! environment variables it reads with their defaults, `--version`, a usage error for anything
//! else, and start-up errors printed for a person (the message and its causes, then what to
//! do), each with the exit code a shell expects.
//!
//! Tidewell programs take their configuration from the environment (`Config::from_env()`), so
//! the command line only has these two flags. Each configuration lists the variables it reads
//! as a `&[Var]` (for instance `HubConfig::VARS` in `tidewell-event-hub`), and a program joins
//! the lists of the parts it runs.
//!
//! ```
//! use std::process::ExitCode;
//! use tidewell_core::cli::{Cli, Var};
//!
//! const VARS: &[Var] = &[Var::new("GREETER_ADDR", "127.0.0.1:3000", "where to listen")];
//!
//! fn main() -> ExitCode {
//!     let cli = Cli::new("greeter", "1.0.0", "Answers every request with a greeting.").vars(VARS);
//!     # let cli = cli.args(["greeter"]);
//!     if let Some(done) = cli.handle_args() {
//!         return done; // --help, --version, or a usage error
//!     }
//!     cli.report(run())
//! }
//!
//! fn run() -> Result<(), Box<dyn std::error::Error>> {
//!     Ok(()) // read the configuration, start serving
//! }
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module's job is to talk to the person at the terminal"
)]

use std::fmt::Write as _;
use std::process::ExitCode;

/// An environment variable a program reads, as `--help` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    /// Its name, such as `TIDEWELL_CACHE_URL`.
    pub name: &'static str,
    /// Its default as text: `""` when unset means "off" or "none", `"required"` when the
    /// program cannot start without it.
    pub default: &'static str,
    /// What it sets, in a few words.
    pub help: &'static str,
}

impl Var {
    /// A variable with its default and what it sets.
    pub const fn new(name: &'static str, default: &'static str, help: &'static str) -> Self {
        Self {
            name,
            default,
            help,
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No arguments: start the program.
    Run,
    /// `--help` or `-h`: print this text and exit 0.
    Help(String),
    /// `--version` or `-V`: print this text and exit 0.
    Version(String),
    /// Anything else: print this message on stderr and exit 2.
    Usage(String),
}

/// A program's command line (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Cli {
    name: &'static str,
    version: &'static str,
    about: &'static str,
    vars: Vec<Var>,
    args: Option<Vec<String>>,
}

impl Cli {
    /// A program called `name` (as installed, e.g. `tidewell-platform`) at `version` (usually
    /// `env!("CARGO_PKG_VERSION")`), doing what `about` says.
    pub fn new(name: &'static str, version: &'static str, about: &'static str) -> Self {
        Self {
            name,
            version,
            about,
            vars: Vec::new(),
            args: None,
        }
    }

    /// Adds variables to the `--help` list (a name already listed is kept once).
    pub fn vars(mut self, vars: &[Var]) -> Self {
        for v in vars {
            if !self.vars.iter().any(|have| have.name == v.name) {
                self.vars.push(*v);
            }
        }
        self
    }

    /// Parses these arguments (the program's name first) instead of the process's own.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// The `--help` text.
    pub fn help(&self) -> String {
        let mut out = format!(
            "{} {}\n{}\n\nUsage: {} [--help | --version]\n",
            self.name, self.version, self.about, self.name
        );
        if !self.vars.is_empty() {
            out.push_str("\nConfigured by these environment variables (default in brackets):\n");
            let width = self.vars.iter().map(|v| v.name.len()).max().unwrap_or(0);
            for v in &self.vars {
                let default = match v.default {
                    "" => String::new(),
                    d => format!(" [{d}]"),
                };
                // ok to ignore: writing to a String cannot fail
                let _ = writeln!(out, "  {:width$}  {}{default}", v.name, v.help);
            }
        }
        out
    }

    /// What the arguments ask for.
    pub fn action(&self) -> Action {
        let args: Vec<String> = match &self.args {
            Some(a) => a.clone(),
            None => std::env::args().collect(),
        };
        match args.get(1..).unwrap_or_default() {
            [] => Action::Run,
            [one] if one == "--help" || one == "-h" => Action::Help(self.help()),
            [one] if one == "--version" || one == "-V" => {
                Action::Version(format!("{} {}\n", self.name, self.version))
            }
            [first, ..] => Action::Usage(format!(
                "{}: unexpected argument {first:?}; it is configured by environment variables \
                 only: run `{} --help` for the list\n",
                self.name, self.name
            )),
        }
    }

    /// Prints the help or the version (exit 0) or a usage error (exit 2) and returns the exit
    /// code, or returns `None` when the program should run.
    pub fn handle_args(&self) -> Option<ExitCode> {
        match self.action() {
            Action::Run => None,
            Action::Help(text) | Action::Version(text) => {
                print!("{text}");
                Some(ExitCode::SUCCESS)
            }
            Action::Usage(text) => {
                eprint!("{text}");
                Some(ExitCode::from(2))
            }
        }
    }

    /// The text [`report`](Self::report) prints for `error`: the message, each cause on its
    /// own line, and where to find the variables.
    pub fn error_text(&self, error: &(dyn std::error::Error + 'static)) -> String {
        let mut out = format!("{}: error: {error}\n", self.name);
        let mut last = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // `#[error(transparent)]` and "...: {source}" messages already hold their cause.
            if !last.contains(&text) {
                // ok to ignore: writing to a String cannot fail
                let _ = writeln!(out, "  caused by: {text}");
            }
            last = text;
            source = cause.source();
        }
        // ok to ignore: writing to a String cannot fail
        let _ = writeln!(
            out,
            "{}: `{} --help` lists the environment variables it reads",
            self.name, self.name
        );
        out
    }

    /// `Ok` is exit 0; an error is printed for a person (see
    /// [`error_text`](Self::error_text)) and is exit 1.
    pub fn report(&self, result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprint!("{}", self.error_text(error.as_ref()));
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::new("tidewell-x", "1.2.3", "Does x.")
            .vars(&[
                Var::new("X_ADDR", "127.0.0.1:1", "where to listen"),
                Var::new("X_SECRET", "required", "the secret"),
                Var::new("X_OFF", "", "off unless set"),
            ])
            .vars(&[Var::new("X_ADDR", "other", "listed twice")])
            .args(args.iter().copied())
    }

    #[test]
    fn help_lists_every_variable_once_with_its_default() {
        let Action::Help(text) = cli(&["x", "--help"]).action() else {
            panic!("not help")
        };
        assert!(text.starts_with("tidewell-x 1.2.3\nDoes x.\n"), "{text}");
        assert!(
            text.contains("  X_ADDR    where to listen [127.0.0.1:1]\n"),
            "{text}"
        );
        assert!(
            text.contains("  X_SECRET  the secret [required]\n"),
            "{text}"
        );
        assert!(text.contains("  X_OFF     off unless set\n"), "{text}");
        assert_eq!(text.matches("X_ADDR").count(), 1, "{text}");
        assert_eq!(cli(&["x", "-h"]).action(), cli(&["x", "--help"]).action());
    }

    #[test]
    fn version_run_and_usage() {
        assert_eq!(
            cli(&["x", "--version"]).action(),
            Action::Version("tidewell-x 1.2.3\n".into())
        );
        assert_eq!(cli(&["x"]).action(), Action::Run);
        for bad in [
            &["x", "--port", "1"][..],
            &["x", "serve"],
            &["x", "--help", "more"],
        ] {
            let Action::Usage(text) = cli(bad).action() else {
                panic!("{bad:?} is not a usage error")
            };
            assert!(text.contains(&format!("{:?}", bad[1])), "{text}");
            assert!(text.contains("tidewell-x --help"), "{text}");
        }
        assert_eq!(cli(&["x", "--nope"]).handle_args(), Some(ExitCode::from(2)));
    }

    #[test]
    fn errors_print_their_causes_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot start: {0}")]
        struct Outer(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot start")]
        struct Plain(#[source] std::io::Error);
        let c = cli(&["x"]);
        let inner = || std::io::Error::other("port taken");
        let text = c.error_text(&Outer(inner()));
        assert_eq!(
            text,
            "tidewell-x: error: cannot start: port taken\n\
             tidewell-x: `tidewell-x --help` lists the environment variables it reads\n"
        );
        let text = c.error_text(&Plain(inner()));
        assert!(text.contains("\n  caused by: port taken\n"), "{text}");
        assert_eq!(c.report(Ok(())), ExitCode::SUCCESS);
        assert_eq!(c.report(Err(Box::new(Plain(inner())))), ExitCode::FAILURE);
    }
}
