//! The ipvec engine and daemon.
//!
//! # Layout
//! - [`store`]: block storage (iroh-blobs and in-memory backends), pins, GC, CAR files.
//! - [`tree`]: the history-independent shard tree: build, edit, lookup, range, diff, merge.
//! - [`repo`]: the on-disk repository: config, node key, store.
//! - [`cli`]: the `ipvec` command line.

pub mod cli;
pub mod collection;
pub mod index;
pub mod repo;
pub mod store;
pub mod tree;
