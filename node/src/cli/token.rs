//! `ipvec token create/list/revoke`: the API tokens besides the admin token, kept hashed in
//! the repository's `keys/tokens.json`. They work on the files directly, daemon or not; a
//! running daemon reads the file again when it changes.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::output::Output;
use crate::limits::tokens::{self, Role};

/// `ipvec token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (once: only its hash is kept).
    Create {
        /// What it may do: `read` (reads and searches) or `write` (reads and writes).
        #[arg(long, default_value = "read")]
        role: Role,
        /// Its name, shown in lists, messages and quotas (default: role and a number).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the tokens: names, roles, when made (never the tokens).
    List,
    /// Revoke a token by name; a running daemon refuses it from its next request.
    Revoke {
        /// The token's name.
        name: String,
    },
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Role::Read, Role::Write]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Runs a token command on the repository at `repo`.
pub fn run(repo: &Path, out: &Output, command: &TokenCommand) -> anyhow::Result<()> {
    anyhow::ensure!(
        repo.join("keys").is_dir(),
        "no ipvec repository at {} (run `ipvec init` first, or pass --repo)",
        repo.display()
    );
    match command {
        TokenCommand::Create { role, name } => {
            let name = match name {
                Some(name) => name.clone(),
                None => {
                    let taken = tokens::load(repo)?.tokens.len();
                    format!("{}-{}", role.as_str(), taken + 1)
                }
            };
            let token = tokens::create(repo, &name, *role)
                .with_context(|| format!("creating token {name:?}"))?;
            out.print(
                format!(
                    "{token}\n# token {name:?} (role {}); shown once, keep it: pass it with --token or IPVEC_API_TOKEN",
                    role.as_str()
                ),
                json!({ "name": name, "role": role.as_str(), "token": token }),
            )
        }
        TokenCommand::List => {
            let file = tokens::load(repo)?;
            let text = if file.tokens.is_empty() {
                "no tokens besides keys/api.token (make one with `ipvec token create`)".to_string()
            } else {
                file.tokens
                    .iter()
                    .map(|t| format!("{}\t{}\tcreated {}", t.name, t.role.as_str(), t.created))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let list: Vec<_> = file
                .tokens
                .iter()
                .map(|t| json!({ "name": t.name, "role": t.role.as_str(), "created": t.created }))
                .collect();
            out.print(text, json!({ "tokens": list }))
        }
        TokenCommand::Revoke { name } => {
            anyhow::ensure!(
                tokens::revoke(repo, name)?,
                "no token named {name:?} (`ipvec token list` shows them)"
            );
            out.print(
                format!("revoked token {name:?}"),
                json!({ "revoked": name }),
            )
        }
    }
}
