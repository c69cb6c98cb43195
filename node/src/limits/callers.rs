//! The HTTP API's side of the limits: whether a route reads or writes, who is calling (a
//! token or, without one, a client address), and each caller's read and write budgets.

use std::{net::IpAddr, sync::Arc, sync::Mutex, time::Duration, time::Instant};

use super::{
    bucket::{Buckets, Rate, Verdict},
    tokens::{Known, Role},
};
use crate::repo::LimitsConfig;

/// Callers whose budgets are remembered at most, per kind (the quietest are forgotten).
pub const MAX_CALLERS: usize = 16_384;

/// Whether a request reads or changes the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads: every GET, searches, pages of points.
    Read,
    /// Everything else: upserts, deletes, collection create/drop/fetch/import, DAG puts and
    /// imports, pins, gc, peer connect/deny/allow, and MCP sessions (whose tools may write).
    Write,
}

impl Access {
    /// `read` or `write`: the metrics label and the config keys' prefix.
    pub fn as_str(&self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// What a request to `path` with `method` does. POSTs that only read (searches and pages,
/// which take their query as a body) are reads; any other method but GET and HEAD writes.
pub fn access(method: &str, path: &str) -> Access {
    if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
        return if path == "/mcp" || path.starts_with("/mcp/") {
            Access::Write
        } else {
            Access::Read
        };
    }
    let under_collection = |tail: &str| {
        path.strip_prefix("/v1/collections/")
            .and_then(|rest| rest.strip_suffix(tail))
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    };
    if method.eq_ignore_ascii_case("POST")
        && (under_collection("/search")
            || under_collection("/search/batch")
            || under_collection("/points/page"))
    {
        Access::Read
    } else {
        Access::Write
    }
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token (keys/api.token): reads and writes, no quotas.
    Admin,
    /// A token of `ipvec token create`.
    Token(Known),
    /// No token (or, where none is required, one the node does not know): its address.
    Address(IpAddr),
}

impl Caller {
    /// What the caller may do.
    pub fn role(&self) -> Role {
        match self {
            Caller::Token(known) => known.role,
            Caller::Admin | Caller::Address(_) => Role::Write,
        }
    }

    /// How the caller is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Caller::Admin => "the admin token".into(),
            Caller::Token(known) => format!("token {:?}", &*known.name),
            Caller::Address(ip) => format!("client {ip}"),
        }
    }

    /// The name of the token, for those made with `ipvec token create`.
    pub fn token_name(&self) -> Option<&str> {
        match self {
            Caller::Token(known) => Some(&known.name),
            _ => None,
        }
    }

    fn key(&self) -> CallerKey {
        match self {
            Caller::Admin => CallerKey::Admin,
            Caller::Token(known) => CallerKey::Token(known.name.clone()),
            Caller::Address(ip) => CallerKey::Address(*ip),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CallerKey {
    Admin,
    Token(Arc<str>),
    Address(IpAddr),
}

/// A request over its caller's rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverRate {
    /// Whole seconds until one request would pass (at least 1), for `Retry-After`.
    pub retry_after_secs: u64,
    /// What it says.
    pub message: String,
}

/// Every caller's read and write budgets.
#[derive(Debug)]
pub struct CallerRates {
    read: Mutex<Buckets<CallerKey>>,
    write: Mutex<Buckets<CallerKey>>,
}

impl CallerRates {
    /// The rates of `config`.
    pub fn new(config: &LimitsConfig) -> Self {
        let buckets = |rate, burst| Mutex::new(Buckets::new(Rate::new(rate, burst), MAX_CALLERS));
        Self {
            read: buckets(config.read_rate, config.read_burst),
            write: buckets(config.write_rate, config.write_burst),
        }
    }

    /// Takes one request of `access` from `caller`'s budget at `now`, or says when to retry.
    pub fn admit(&self, caller: &Caller, access: Access, now: Instant) -> Result<(), OverRate> {
        let buckets = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        let mut buckets = buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Verdict::Refused { retry_after } = buckets.take(caller.key(), 1.0, now).verdict else {
            return Ok(());
        };
        let rate = buckets.rate();
        drop(buckets);
        let kind = access.as_str();
        Err(OverRate {
            retry_after_secs: whole_seconds(retry_after),
            message: format!(
                "{} is over its {kind} rate ({} {kind}s a second, bursts of {}: \
                 limits.{kind}_rate and limits.{kind}_burst); retry after the time in Retry-After, \
                 or raise the limit in the daemon's config",
                caller.describe(),
                rate.per_second,
                rate.burst,
            ),
        })
    }
}

/// `d` rounded up to whole seconds, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_that_take_a_query_body_read_and_other_posts_write() {
        for (method, path) in [
            ("GET", "/v1/collections"),
            ("GET", "/v1/collections/a/points/1"),
            ("POST", "/v1/collections/a/search"),
            ("POST", "/v1/collections/a/search/batch"),
            ("POST", "/v1/collections/a/points/page"),
        ] {
            assert_eq!(access(method, path), Access::Read, "{method} {path}");
        }
        for (method, path) in [
            ("POST", "/v1/collections"),
            ("PUT", "/v1/collections/a/points"),
            ("POST", "/v1/collections/a/points/delete"),
            ("DELETE", "/v1/collections/a"),
            ("POST", "/v1/collections/import"),
            ("POST", "/v1/collections/fetch"),
            ("POST", "/v1/gc"),
            ("POST", "/v1/dag"),
            ("POST", "/v1/pins/bafy"),
            ("POST", "/v1/peers/x/deny"),
            ("POST", "/mcp"),
            ("GET", "/mcp"),
            ("POST", "/v1/collections/a/b/search"),
        ] {
            assert_eq!(access(method, path), Access::Write, "{method} {path}");
        }
    }

    #[test]
    fn each_caller_has_its_own_budget_per_kind_with_a_retry_time() {
        let config = LimitsConfig {
            read_rate: 2,
            read_burst: 3,
            write_rate: 1,
            write_burst: 1,
            ..LimitsConfig::default()
        };
        let rates = CallerRates::new(&config);
        let a = Caller::Address("127.0.0.1".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            rates.admit(&a, Access::Read, t0).unwrap();
        }
        let over = rates.admit(&a, Access::Read, t0).unwrap_err();
        assert_eq!(over.retry_after_secs, 1);
        assert!(
            over.message.contains("limits.read_rate"),
            "{}",
            over.message
        );
        // Writes have their own budget, and the admin token its own.
        rates.admit(&a, Access::Write, t0).unwrap();
        assert!(rates.admit(&a, Access::Write, t0).is_err());
        rates.admit(&Caller::Admin, Access::Read, t0).unwrap();
        rates
            .admit(&a, Access::Read, t0 + Duration::from_millis(500))
            .unwrap();
        assert_eq!(whole_seconds(Duration::from_millis(2_001)), 3);
    }
}
