//! The `ipvec` command line, Kubo style: commands act on a repository (`--repo DIR`,
//! `$IPVEC_PATH`, default `~/.ipvec`), through the API of the daemon that holds it when one
//! runs, else on the repository directly.

mod args;
mod backend;
mod backup;
pub(crate) mod carfile;
mod collection;
mod daemon;
mod dag;
mod embed;
mod input;
mod migrate;
mod output;
mod p2p;
mod search;
mod token;

use std::path::PathBuf;

use clap::CommandFactory;

use crate::repo::{Config, Repo};

pub use args::*;
pub use backend::Backend;
pub use output::{is_stdout_closed, StdoutClosed};

/// A value as DAG-JSON, the text form `dag get` prints and `dag put` reads.
pub fn dag_json(value: &ipld_core::ipld::Ipld) -> anyhow::Result<Vec<u8>> {
    serde_ipld_dagjson::to_vec(value)
        .map_err(|e| anyhow::anyhow!("cannot write the block as DAG-JSON: {e}"))
}

impl Cli {
    /// The repository folder.
    pub fn repo_path(&self) -> PathBuf {
        self.repo.clone().unwrap_or_else(Repo::default_path)
    }

    /// The token to send to a daemon: `--token` or `$IPVEC_API_TOKEN`, else the repository's
    /// keys/api.token.
    pub fn api_token(&self, repo: &std::path::Path) -> Option<String> {
        self.token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().to_string())
            .or_else(|| crate::repo::read_api_token(repo))
    }

    /// Applies the command-line flags to a configuration.
    pub fn adjust(&self, config: &mut Config) {
        if let Some(level) = &self.log_level {
            config.log.level = level.clone();
        }
        if let Some(format) = &self.log_format {
            config.log.format = format.clone();
        }
        if let Command::Daemon {
            api_listen,
            p2p_listen,
            bootstrap,
            no_mdns,
        } = &self.command
        {
            if let Some(addr) = api_listen {
                config.api.listen = addr.clone();
            }
            if !p2p_listen.is_empty() {
                config.p2p.listen = p2p_listen.clone();
            }
            if !bootstrap.is_empty() {
                config.p2p.bootstrap = bootstrap.clone();
            }
            if *no_mdns {
                config.p2p.mdns = false;
            }
        }
    }

    /// The log level and format to use: the repository's config (if it has one), the
    /// environment, the flags. Commands other than `daemon` log warnings only unless told.
    pub fn log_settings(&self) -> (String, String) {
        let mut config = Config::load(&self.repo_path().join("config.toml"))
            .and_then(Config::with_env)
            .unwrap_or_default();
        if !matches!(self.command, Command::Daemon { .. }) {
            config.log.level = "warn".into();
        }
        self.adjust(&mut config);
        (config.log.level, config.log.format)
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let path = cli.repo_path();
    let out = output::Output { json: cli.json };
    match &cli.command {
        Command::Init => {
            let repo = Repo::init(&path).await?;
            let printed = out.init(repo.path(), &repo.peer_id().to_string());
            repo.close().await?;
            return printed;
        }
        Command::Daemon { .. } => return daemon::run(&cli, &path).await,
        Command::Tui => {
            let endpoint = match &cli.api {
                Some(url) => ipvec_tui::Endpoint::Url(url.clone()),
                None => ipvec_tui::Endpoint::ApiFile(crate::repo::api_file(&path)),
            };
            let token = cli.api_token(&path);
            return Ok(ipvec_tui::run(endpoint, token, path.join("tui.log")).await?);
        }
        Command::Embed { provider, texts } => return embed::run(&path, *provider, texts).await,
        Command::Backup(command) if !command.needs_repository() => {
            return backup::run_offline(&out, command)
        }
        Command::Token(command) => return token::run(&path, &out, command),
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "ipvec", &mut script);
            return output::write_stdout(&script);
        }
        _ => {}
    }
    let token = cli.api_token(&path);
    let backend = Backend::connect(&path, cli.api.as_deref(), token, |c| cli.adjust(c)).await?;
    if let Command::Mcp = cli.command {
        let backend = std::sync::Arc::new(backend);
        let served = crate::mcp::serve_stdio(backend.clone()).await;
        let closed = match &*backend {
            Backend::Local(node) => node.clone().close().await,
            Backend::Remote(_) => Ok(()),
        };
        served?;
        closed?;
        return Ok(());
    }
    let result = match cli.command {
        Command::Config(ConfigCommand::Show) => match backend.ops().config().await {
            Ok(config) => {
                let text = toml::to_string_pretty(&config)?;
                out.print(text.trim_end(), serde_json::to_value(&config)?)?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        command @ (Command::Id
        | Command::Peers { .. }
        | Command::Connect { .. }
        | Command::Dht(_)
        | Command::Fetch { .. }
        | Command::Join { .. }
        | Command::Leave { .. }) => p2p::run(&backend, &out, command).await,
        command @ Command::Search { .. } => search::run(&backend, &out, command).await,
        Command::Backup(command) => backup::run(&backend, &out, command).await,
        Command::Migrate {
            ref from,
            ref to,
            ref bridge,
        } => migrate::run(&backend, &out, &path, from, to, bridge).await,
        Command::Import {
            ref source,
            ref name,
            ref bridge,
        } => {
            migrate::run(
                &backend,
                &out,
                &path,
                source,
                &format!("ipvec:{name}"),
                bridge,
            )
            .await
        }
        Command::Export {
            ref name,
            ref target,
            ref bridge,
        } => {
            migrate::run(
                &backend,
                &out,
                &path,
                &format!("ipvec:{name}"),
                target,
                bridge,
            )
            .await
        }
        command @ (Command::Collection(_)
        | Command::Add { .. }
        | Command::Get { .. }
        | Command::Delete { .. }) => collection::run(&backend, &out, command).await,
        command => dag::run(&backend, &out, command).await,
    };
    let closed = backend.close().await;
    result?;
    closed?;
    Ok(())
}
