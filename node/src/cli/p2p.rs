//! Commands on the peer-to-peer layer: id, peers (and denying them), connect, dht, fetch.

use super::{backend::Backend, output::Output, Command, DhtCommand, PeersCommand};

/// Runs a peer-to-peer command.
pub async fn run(backend: &Backend, out: &Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Id => {
            let id = backend.ops().id().await?;
            let mut text = format!("peer id: {}\nagent:   {}", id.peer_id, id.agent);
            for a in &id.addresses {
                text.push_str(&format!("\naddress: {a}"));
            }
            if id.addresses.is_empty() {
                text.push_str("\n(no daemon running: no addresses; `ipvec daemon` listens on ");
                text.push_str(&id.listen.join(", "));
                text.push(')');
            }
            out.print(text, serde_json::to_value(&id)?)?;
        }
        Command::Peers {
            action: Some(action),
        } => deny(backend, out, action).await?,
        Command::Peers { action: None } => {
            let list = backend.ops().peers().await?;
            let text: Vec<String> = list
                .peers
                .iter()
                .map(|p| {
                    format!(
                        "{}\t{}\t{}\t{}",
                        p.peer_id,
                        p.address,
                        p.direction,
                        p.latency_ms
                            .map_or("-".to_string(), |ms| format!("{ms:.1} ms"))
                    )
                })
                .collect();
            if out.json || !text.is_empty() {
                out.print(text.join("\n"), serde_json::to_value(&list)?)?;
            }
        }
        Command::Connect { address } => {
            let connected = backend.ops().connect(&address).await?;
            out.print(
                format!("connected to {}", connected.peer_id),
                serde_json::to_value(&connected)?,
            )?;
        }
        Command::Dht(DhtCommand::Providers { cid }) => {
            let list = backend.ops().providers(&cid).await?;
            let text: Vec<String> = list
                .providers
                .iter()
                .map(|p| format!("{}\t{}", p.peer_id, p.addresses.join(" ")))
                .collect();
            out.print(text.join("\n"), serde_json::to_value(&list)?)?;
        }
        Command::Fetch {
            id,
            name,
            from,
            shards,
        } => {
            let bar = super::output::progress_bar(None, "fetching");
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let fetched = backend
                .ops()
                .fetch_collection(&id, name, &from, shards)
                .await;
            bar.finish_and_clear();
            let c = fetched?;
            out.print(
                format!(
                    "collection {} ({}): {} points, root {}{}",
                    c.name,
                    c.id,
                    c.points,
                    c.root,
                    if c.writable {
                        ""
                    } else {
                        ", read-only replica"
                    }
                ),
                serde_json::to_value(&c)?,
            )?;
        }
        Command::Join {
            id,
            capacity,
            name,
            from,
        } => {
            let request = ipvec_protocol::api::JoinCollection {
                id,
                capacity,
                name,
                from,
            };
            let joined = backend.ops().join(request).await?;
            out.print(
                format!(
                    "joined collection {} ({}) with {} bytes: {} members known; \
                     `ipvec collection members {}` shows the shards placed here",
                    joined.name,
                    joined.id,
                    joined.capacity,
                    joined.members.len(),
                    joined.name
                ),
                serde_json::to_value(&joined)?,
            )?;
        }
        Command::Leave { id } => {
            let left = backend.ops().leave(&id).await?;
            let held = left.shards.iter().filter(|s| s.held).count();
            out.print(
                format!(
                    "leaving collection {} ({}): {held} shards to hand over; the collection is \
                     dropped here once their new holders have them",
                    left.name, left.id
                ),
                serde_json::to_value(&left)?,
            )?;
        }
        _ => unreachable!("only peer-to-peer commands come here"),
    }
    Ok(())
}

/// Runs `peers deny`, `peers allow` or `peers denied`.
async fn deny(backend: &Backend, out: &Output, action: PeersCommand) -> anyhow::Result<()> {
    let done = match action {
        PeersCommand::Deny { peer_id } => backend.ops().deny_peer(&peer_id).await?,
        PeersCommand::Allow { peer_id } => backend.ops().allow_peer(&peer_id).await?,
        PeersCommand::Denied => {
            let list = backend.ops().denied_peers().await?;
            let text: Vec<String> = list
                .peers
                .iter()
                .map(|p| format!("{}\t{}", p.peer_id, p.source))
                .collect();
            if out.json || !text.is_empty() {
                out.print(text.join("\n"), serde_json::to_value(&list)?)?;
            }
            return Ok(());
        }
    };
    let state = if done.denied { "denied" } else { "allowed" };
    let text = if done.changed {
        format!("{} {state}", done.peer_id)
    } else {
        format!("{} was already {state}", done.peer_id)
    };
    out.print(text, serde_json::to_value(&done)?)
}
