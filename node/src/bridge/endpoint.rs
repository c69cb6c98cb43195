//! Where points come from or go to: [`Endpoint`], written `KIND:WHERE` on the command line,
//! and the [`BridgeOptions`] that say how to read a store that does not describe itself.

use std::{fmt, path::PathBuf};

use ipvec_protocol::manifest::Metric;

use super::{elastic, faiss, ipvec, parquet, qdrant, BridgeError, Result, Sink, Source};
use crate::ops::Operations;

/// The two dialects of the Elasticsearch API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Elasticsearch: `dense_vector` fields.
    Elasticsearch,
    /// OpenSearch: `knn_vector` fields in a `index.knn` index.
    OpenSearch,
}

/// A store of points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A collection of this node (`ipvec:NAME`).
    Ipvec {
        /// The collection's name.
        name: String,
    },
    /// A FAISS index file (`faiss:PATH`, or a path ending in `.faiss` or `.index`).
    Faiss {
        /// The file.
        path: PathBuf,
    },
    /// A Parquet file (`parquet:PATH`, or a path ending in `.parquet`).
    Parquet {
        /// The file.
        path: PathBuf,
    },
    /// An Elasticsearch/OpenSearch bulk NDJSON file (`bulk:PATH`, or a path ending in
    /// `.ndjson`).
    Bulk {
        /// The file.
        path: PathBuf,
    },
    /// A Qdrant collection (`qdrant:http://HOST:6333/COLLECTION`).
    Qdrant {
        /// The server's base URL.
        url: String,
        /// The collection.
        collection: String,
    },
    /// An Elasticsearch or OpenSearch index (`elasticsearch:http://HOST:9200/INDEX`,
    /// `opensearch:…`).
    Elastic {
        /// The server's base URL.
        url: String,
        /// The index.
        index: String,
        /// Which of the two.
        flavor: Flavor,
    },
}

/// The forms an endpoint takes, for messages.
pub const ENDPOINT_FORMS: &str = "ipvec:NAME, faiss:PATH, parquet:PATH, bulk:PATH (Elasticsearch \
    bulk NDJSON), qdrant:http://HOST:6333/COLLECTION, elasticsearch:http://HOST:9200/INDEX or \
    opensearch:http://HOST:9200/INDEX; a path ending in .faiss, .index, .parquet or .ndjson \
    needs no prefix";

impl Endpoint {
    /// Reads `KIND:WHERE`, or a file path whose extension names its kind.
    pub fn parse(text: &str) -> Result<Endpoint> {
        let text = text.trim();
        if let Some((kind, rest)) = text.split_once(':') {
            let rest = rest.trim();
            let file = || {
                if rest.is_empty() {
                    Err(BridgeError::invalid(format!(
                        "{text:?} names no file: write {kind}:PATH"
                    )))
                } else {
                    Ok(PathBuf::from(rest))
                }
            };
            match kind.to_ascii_lowercase().as_str() {
                "ipvec" => {
                    if rest.is_empty() {
                        return Err(BridgeError::invalid(format!(
                            "{text:?} names no collection: write ipvec:NAME"
                        )));
                    }
                    return Ok(Endpoint::Ipvec {
                        name: rest.to_string(),
                    });
                }
                "faiss" => return Ok(Endpoint::Faiss { path: file()? }),
                "parquet" => return Ok(Endpoint::Parquet { path: file()? }),
                "bulk" | "ndjson" => return Ok(Endpoint::Bulk { path: file()? }),
                "qdrant" => {
                    let (url, collection) = server(text, rest, "COLLECTION")?;
                    return Ok(Endpoint::Qdrant { url, collection });
                }
                "elasticsearch" | "es" | "opensearch" => {
                    let (url, index) = server(text, rest, "INDEX")?;
                    let flavor = if kind.eq_ignore_ascii_case("opensearch") {
                        Flavor::OpenSearch
                    } else {
                        Flavor::Elasticsearch
                    };
                    return Ok(Endpoint::Elastic { url, index, flavor });
                }
                // `http://…` alone, or a Windows drive letter: fall through to the path rules.
                _ => {}
            }
        }
        let path = PathBuf::from(text);
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("faiss" | "index") => Ok(Endpoint::Faiss { path }),
            Some("parquet") => Ok(Endpoint::Parquet { path }),
            Some("ndjson") => Ok(Endpoint::Bulk { path }),
            _ => Err(BridgeError::invalid(format!(
                "cannot tell what kind of store {text:?} is; write one of {ENDPOINT_FORMS}"
            ))),
        }
    }

    /// Opens it to be read. Opening does no I/O: the first [`Source::shape`] does.
    pub fn source<'a>(
        &self,
        ops: &'a dyn Operations,
        options: &BridgeOptions,
    ) -> Result<Box<dyn Source + 'a>> {
        Ok(match self {
            Endpoint::Ipvec { name } => Box::new(ipvec::IpvecSource::new(ops, name)),
            Endpoint::Faiss { path } => faiss::source(path, options)?,
            Endpoint::Parquet { path } => parquet::source(path, options)?,
            Endpoint::Bulk { path } => elastic::file_source(path, options)?,
            Endpoint::Qdrant { url, collection } => qdrant::source(url, collection, options)?,
            Endpoint::Elastic { url, index, flavor } => {
                elastic::source(url, index, *flavor, options)?
            }
        })
    }

    /// Opens it to be written. Opening does no I/O: [`Sink::begin`] does.
    pub fn sink<'a>(
        &self,
        ops: &'a dyn Operations,
        options: &BridgeOptions,
    ) -> Result<Box<dyn Sink + 'a>> {
        Ok(match self {
            Endpoint::Ipvec { name } => Box::new(ipvec::IpvecSink::new(ops, name, options)),
            Endpoint::Faiss { path } => faiss::sink(path, options)?,
            Endpoint::Parquet { path } => parquet::sink(path, options)?,
            Endpoint::Bulk { path } => elastic::file_sink(path, options)?,
            Endpoint::Qdrant { url, collection } => qdrant::sink(url, collection, options)?,
            Endpoint::Elastic { url, index, flavor } => {
                elastic::sink(url, index, *flavor, options)?
            }
        })
    }
}

/// Splits `http://HOST:PORT/NAME` into the base URL and the last path segment.
fn server(text: &str, rest: &str, what: &str) -> Result<(String, String)> {
    let bad = || {
        BridgeError::invalid(format!(
            "{text:?} is not a server and {}: write e.g. {}:http://127.0.0.1:PORT/{what}",
            what.to_lowercase(),
            text.split(':').next().unwrap_or("KIND")
        ))
    };
    if !(rest.starts_with("http://") || rest.starts_with("https://")) {
        return Err(bad());
    }
    let trimmed = rest.trim_end_matches('/');
    let (base, name) = trimmed.rsplit_once('/').ok_or_else(bad)?;
    // `http://host` alone has no path segment after the authority.
    if name.is_empty() || base.ends_with('/') || base.ends_with(':') {
        return Err(bad());
    }
    Ok((base.to_string(), name.to_string()))
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ipvec { name } => write!(f, "ipvec:{name}"),
            Endpoint::Faiss { path } => write!(f, "faiss:{}", path.display()),
            Endpoint::Parquet { path } => write!(f, "parquet:{}", path.display()),
            Endpoint::Bulk { path } => write!(f, "bulk:{}", path.display()),
            Endpoint::Qdrant { url, collection } => write!(f, "qdrant:{url}/{collection}"),
            Endpoint::Elastic { url, index, flavor } => {
                let kind = match flavor {
                    Flavor::Elasticsearch => "elasticsearch",
                    Flavor::OpenSearch => "opensearch",
                };
                write!(f, "{kind}:{url}/{index}")
            }
        }
    }
}

/// How to read and write stores that do not describe themselves fully.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeOptions {
    /// Sent as Qdrant's `api-key` header, or as `Authorization: ApiKey …` to Elasticsearch
    /// and OpenSearch.
    pub api_key: Option<String>,
    /// Qdrant: the named vector to read or write (default: the unnamed one).
    pub vector_name: Option<String>,
    /// Parquet, Elasticsearch/OpenSearch: the column or field holding the vector.
    pub vector_field: String,
    /// Parquet: the column holding the id.
    pub id_field: String,
    /// FAISS: a side file of metadata keyed by id (JSON lines `{"id": …, …}`);
    /// read on import, written on export.
    pub metadata_file: Option<PathBuf>,
    /// The metric of a source that does not record one (Parquet, bulk files), or to check
    /// against one that does.
    pub metric: Option<Metric>,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            vector_name: None,
            vector_field: "vector".into(),
            id_field: "id".into(),
            metadata_file: None,
            metric: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_by_prefix_or_extension() {
        let parse = |t| Endpoint::parse(t).unwrap();
        assert_eq!(
            parse("ipvec:docs"),
            Endpoint::Ipvec {
                name: "docs".into()
            }
        );
        assert_eq!(
            parse("a/b.index"),
            Endpoint::Faiss {
                path: "a/b.index".into()
            }
        );
        assert_eq!(
            parse("faiss:x.bin"),
            Endpoint::Faiss {
                path: "x.bin".into()
            }
        );
        assert_eq!(
            parse("t.parquet"),
            Endpoint::Parquet {
                path: "t.parquet".into()
            }
        );
        assert_eq!(
            parse("dump.ndjson"),
            Endpoint::Bulk {
                path: "dump.ndjson".into()
            }
        );
        assert_eq!(
            parse("qdrant:http://127.0.0.1:6333/items/"),
            Endpoint::Qdrant {
                url: "http://127.0.0.1:6333".into(),
                collection: "items".into()
            }
        );
        assert_eq!(
            parse("opensearch:https://search.example:9200/prefix/idx"),
            Endpoint::Elastic {
                url: "https://search.example:9200/prefix".into(),
                index: "idx".into(),
                flavor: Flavor::OpenSearch
            }
        );
        for e in [
            parse("qdrant:http://h:1/c"),
            parse("es:http://h:1/i"),
            parse("bulk:f.ndjson"),
        ] {
            assert_eq!(Endpoint::parse(&e.to_string()).unwrap(), e);
        }
    }

    #[test]
    fn unclear_endpoints_say_which_forms_there_are() {
        for bad in [
            "vectors.bin",
            "qdrant:localhost:6333/c",
            "qdrant:http://h:1",
            "ipvec:",
            "faiss:",
        ] {
            let e = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(":PATH") || e.contains("http://") || e.contains("NAME"),
                "{bad}: {e}"
            );
        }
    }
}
