//! The Model Context Protocol server: ipvec's operations as MCP tools, for AI assistants and
//! other MCP clients. `ipvec mcp` serves it over stdio (through the daemon's API when a daemon
//! runs, else on the repository opened in process, as every CLI command does), and the
//! daemon serves it over streamable HTTP at `/mcp`, behind the API's host, origin and token
//! checks. docs/mcp.md lists the tools.
//!
//! The tools do not restate the node's operations: each calls one of
//! [`Operations`](crate::ops::Operations) on a [`Backend`], the same choice the CLI makes.
//!
//! # Layout
//! - this module: serving the tools over stdio ([`serve_stdio`]) and HTTP ([`http_service`]),
//!   and [`McpError`].
//! - [`params`]: each tool's input, with the JSON schema clients see.
//! - [`tools`]: [`IpvecTools`], the tools and what each one calls.
//! - [`ipld`]: the tools that treat a collection as IPLD content: its DAG for any IPLD
//!   tool, brought in by its root, pinned to be kept and served.

pub mod ipld;
pub mod params;
pub mod tools;

use std::sync::Arc;

use rmcp::{
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ServiceExt,
};
use tokio_util::sync::CancellationToken;

pub use self::tools::IpvecTools;
use crate::{cli::Backend, ops::Node};

/// Why the MCP server stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The client did not complete the MCP handshake.
    #[error("the MCP client did not complete the handshake ({0}); start this command from an MCP client, which speaks JSON-RPC on its stdin and stdout")]
    Handshake(String),
    /// The session ended abnormally.
    #[error("the MCP session ended abnormally: {0}")]
    Session(String),
}

/// Serves the tools over stdin and stdout until the client closes the session.
pub async fn serve_stdio(backend: Arc<Backend>) -> Result<(), McpError> {
    let service = IpvecTools::new(backend)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Handshake(e.to_string()))?;
    service
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| McpError::Session(e.to_string()))
}

/// The tools over `node` as a streamable HTTP service, for the daemon to mount at `/mcp`;
/// `stop` ends its sessions. The daemon's API checks each request's host, origin and token
/// before it reaches this service, so the service's own host check is off. The CAR tools
/// refuse here: their paths would name the daemon's files.
pub fn http_service(
    node: Node,
    stop: CancellationToken,
) -> StreamableHttpService<IpvecTools, LocalSessionManager> {
    let tools = IpvecTools::without_files(Arc::new(Backend::Local(node)));
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    config.cancellation_token = stop;
    StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
