//! Parquet tables as a bridge end: one row per point, an id column, a vector column and one
//! column per metadata key.
//!
//! What is read and written, and how metadata that varies from point to point is kept
//! without loss, is described in `docs/bridges-parquet.md`.
//!
//! # Layout
//! - [`read`]: [`ParquetSource`], streaming a file record batch by record batch.
//! - [`value`]: one Arrow value as JSON metadata, and which column types can be carried.
//! - [`write`]: [`ParquetSink`], buffering the first row group to fix the schema.

mod read;
mod value;
mod write;

use std::path::Path;

pub use read::ParquetSource;
pub use write::ParquetSink;

use super::{BridgeOptions, Result, Sink, Source};

/// File key-value metadata: the collection's metric (`cosine`, `l2`, `dot`).
pub const METRIC_KEY: &str = "ipvec.metric";
/// File key-value metadata: the vector dimension.
pub const DIMENSION_KEY: &str = "ipvec.dimension";
/// File key-value metadata: the name of the column holding, as a JSON object, the metadata
/// that has no column of its own (see [`REST_COLUMN`]).
pub const REST_COLUMN_KEY: &str = "ipvec.rest_column";
/// The column the sink writes the remaining metadata of each row into.
pub const REST_COLUMN: &str = "metadata_json";
/// Rows per row group written (and rows looked at to choose the metadata columns).
pub const ROW_GROUP: usize = 65_536;
/// Rows per record batch read.
pub const READ_BATCH: usize = 8_192;

/// Opens `path` to be read.
pub fn source(path: &Path, options: &BridgeOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(ParquetSource::new(path, options)))
}

/// Opens `path` to be written.
pub fn sink(path: &Path, options: &BridgeOptions) -> Result<Box<dyn Sink>> {
    Ok(Box::new(ParquetSink::new(path, options)))
}

#[cfg(test)]
mod tests {
    use ipvec_protocol::{
        api::{PointId, PointIn},
        manifest::Metric,
    };
    use serde_json::json;

    use super::*;
    use crate::bridge::{digest::ContentDigest, Shape};

    fn shape(dimension: u32) -> Shape {
        Shape {
            dimension,
            metric: Metric::Dot,
            count: None,
        }
    }

    async fn write_all(path: &Path, points: &[PointIn], dimension: u32) -> Result<()> {
        // Columns chosen from the first 10 points: later points bring keys and types of
        // their own.
        let mut sink = ParquetSink::new(path, &BridgeOptions::default()).with_row_group(10);
        sink.begin(&shape(dimension), false).await?;
        for batch in points.chunks(7) {
            sink.write(batch).await?;
        }
        sink.finish().await
    }

    async fn read_all(path: &Path, options: &BridgeOptions) -> Result<(Shape, Vec<PointIn>)> {
        let mut source = ParquetSource::new(path, options);
        let shape = source.shape().await?;
        let mut points = Vec::new();
        loop {
            let batch = source.next_batch(5).await?;
            if batch.is_empty() {
                return Ok((shape, points));
            }
            points.extend(batch);
        }
    }

    #[tokio::test]
    async fn points_come_back_as_they_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let points: Vec<PointIn> = (0..40u64)
            .map(|i| {
                let metadata = match i % 4 {
                    0 if i > 20 => Some(json!({"late": i, "n": [i], "id": "shadow"})),
                    0 => None,
                    1 => Some(json!({"n": i, "s": "x", "f": 0.25})),
                    2 => Some(json!({"n": "not a number", "deep": {"a": [1, null]}})),
                    _ => Some(json!({"b": true, "n": null, "f": 3})),
                };
                PointIn::vector(PointId::Int(i), vec![i as f32, -0.0, 1e-40], metadata)
            })
            .collect();
        write_all(&path, &points, 3).await.unwrap();
        assert!(!migrate_tmp(&path).exists());
        let (shape, back) = read_all(&path, &BridgeOptions::default()).await.unwrap();
        assert_eq!(shape.dimension, 3);
        assert_eq!(shape.metric, Metric::Dot, "the file's metric");
        assert_eq!(shape.count, Some(40));
        let digest = |p: &[PointIn]| {
            let mut d = ContentDigest::new();
            d.add_all(p);
            d
        };
        assert_eq!(digest(&back), digest(&points));
        assert_eq!(back[2].metadata, points[2].metadata);
        let bits: Vec<u32> = back[5].vector.iter().map(|x| x.to_bits()).collect();
        assert_eq!(
            bits,
            [5.0f32.to_bits(), (-0.0f32).to_bits(), 1e-40f32.to_bits()]
        );
    }

    #[tokio::test]
    async fn string_ids_mixed_ids_and_a_metric_that_disagrees() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let points = vec![
            PointIn::vector(PointId::Str("a".into()), vec![1.0], None),
            PointIn::vector(PointId::Str("b".into()), vec![2.0], None),
        ];
        write_all(&path, &points, 1).await.unwrap();
        let (_, back) = read_all(&path, &BridgeOptions::default()).await.unwrap();
        assert_eq!(back, points);
        let options = BridgeOptions {
            metric: Some(Metric::L2),
            ..BridgeOptions::default()
        };
        let e = read_all(&path, &options).await.unwrap_err().to_string();
        assert!(
            e.contains("records metric dot") && e.contains("--metric"),
            "{e}"
        );

        let mixed = vec![
            PointIn::vector(PointId::Int(1), vec![1.0], None),
            PointIn::vector(PointId::Str("b".into()), vec![2.0], None),
        ];
        let other = dir.path().join("m.parquet");
        let e = write_all(&other, &mixed, 1).await.unwrap_err().to_string();
        assert!(e.contains("mixes integer and string ids"), "{e}");
    }

    #[tokio::test]
    async fn an_empty_collection_is_an_empty_table_and_abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.parquet");
        write_all(&path, &[], 4).await.unwrap();
        let (shape, back) = read_all(&path, &BridgeOptions::default()).await.unwrap();
        assert_eq!((shape.dimension, back.len()), (4, 0));

        let path = dir.path().join("a.parquet");
        let mut sink = ParquetSink::new(&path, &BridgeOptions::default());
        sink.begin(&shape, false).await.unwrap();
        sink.write(&[PointIn::vector(PointId::Int(1), vec![0.0; 4], None)])
            .await
            .unwrap();
        assert!(migrate_tmp(&path).exists());
        sink.abort().await.unwrap();
        assert!(!migrate_tmp(&path).exists() && !path.exists());
    }

    fn migrate_tmp(path: &Path) -> std::path::PathBuf {
        crate::bridge::migrate::tmp_path(path)
    }
}
