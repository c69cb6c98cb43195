//! Saving and loading an [`HnswIndex`]: usearch's graph, then (for a graph over codes) the
//! codes' section with the f32 vectors, then the duplicate map; and the checks a loaded file
//! must pass before a kernel reads its vectors.

use std::path::Path;

use super::{
    backend, codes, format_error, options, takes_codes, Groups, HnswIndex, HnswRuntime, IndexError,
    IndexSpec,
};

impl HnswIndex {
    /// Writes the index to a file: usearch's graph, then the points that share slots.
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        self.index.save(&path.to_string_lossy()).map_err(backend)?;
        if let Some(codes) = &self.codes {
            let mut section = Vec::new();
            codes.encode_into(&mut section);
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut file| std::io::Write::write_all(&mut file, &section))
                .map_err(|e| format_error(path, e.to_string()))?;
        }
        self.groups
            .append_to(path, self.index.size())
            .map_err(|e| format_error(path, e.to_string()))
    }

    /// Reads an index written by [`HnswIndex::save`] with the same spec.
    pub fn load(spec: IndexSpec, path: &Path) -> Result<Self, IndexError> {
        Self::load_with_runtime(spec, HnswRuntime::default(), path)
    }

    /// [`HnswIndex::load`] with a runtime.
    pub fn load_with_runtime(
        spec: IndexSpec,
        runtime: HnswRuntime,
        path: &Path,
    ) -> Result<Self, IndexError> {
        let (slots, groups, end) = Groups::read_from(path).map_err(|e| format_error(path, e))?;
        let codes = codes::Codes::read_from(path, end, spec.dimension)
            .map_err(|e| format_error(path, e))?;
        // Loading puts back usearch's distance function: the kernel goes in afterwards.
        let mut this = Self::without_kernel(spec, runtime, codes.is_some())?;
        this.codes = codes;
        this.index.load(&path.to_string_lossy()).map_err(backend)?;
        this.loaded(spec, runtime, (slots, groups), path)
    }

    /// [`HnswIndex::load`] of the bytes of such a file (no file written or read).
    pub fn load_bytes(spec: IndexSpec, bytes: &[u8]) -> Result<Self, IndexError> {
        let what = Path::new("(index bytes)");
        let (slots, groups, end) =
            Groups::read_from_bytes(bytes).map_err(|e| format_error(what, e))?;
        let codes = codes::Codes::read_from_bytes(bytes, end, spec.dimension)
            .map_err(|e| format_error(what, e))?;
        let mut this = Self::without_kernel(spec, HnswRuntime::default(), codes.is_some())?;
        this.codes = codes;
        this.index.load_from_buffer(bytes).map_err(backend)?;
        this.loaded(spec, HnswRuntime::default(), (slots, groups), what)
    }

    /// Completes a load of `what`: checks the graph against its duplicate map (`slots`,
    /// `groups`) and the spec, and installs the kernel and the spec's settings.
    fn loaded(
        mut self,
        spec: IndexSpec,
        runtime: HnswRuntime,
        (slots, groups): (usize, Groups),
        what: &Path,
    ) -> Result<Self, IndexError> {
        let this = &mut self;
        if this.index.size() != slots {
            return Err(format_error(
                what,
                format!(
                    "the graph holds {} vectors, its duplicate map {slots}",
                    this.index.size()
                ),
            ));
        }
        if !groups.fit(|key| this.index.contains(key)) {
            return Err(format_error(
                what,
                "the duplicate map names slots the graph lacks".into(),
            ));
        }
        this.groups = groups;
        if this.index.dimensions() != spec.dimension {
            return Err(IndexError::Dimension {
                expected: spec.dimension,
                actual: this.index.dimensions(),
            });
        }
        if this.codes.is_some() != takes_codes(&spec) {
            return Err(format_error(
                what,
                format!(
                    "the graph is {} one-byte codes, the collection's index {}",
                    if this.codes.is_some() {
                        "over"
                    } else {
                        "not over"
                    },
                    if takes_codes(&spec) {
                        "walks on codes"
                    } else {
                        "does not"
                    }
                ),
            ));
        }
        // The kernels read vectors of the kind the options name: a graph of another kind
        // (a damaged or foreign file) must not meet them.
        let expected = options(&spec, this.codes.is_some());
        if this.index.scalar_kind() != expected.quantization
            || this.index.metric_kind() != expected.metric
        {
            return Err(format_error(
                what,
                "the graph stores another kind of vector or metric than the collection's".into(),
            ));
        }
        if let Some(codes) = &this.codes {
            let rows = codes.rows();
            let whole = rows.iter().count() == slots
                && rows.iter().all(|(key, _)| this.index.contains(key))
                && (slots == 0 || codes.fitted().is_some());
            if !whole {
                return Err(format_error(
                    what,
                    "the f32 vectors beside the codes do not match the graph's slots".into(),
                ));
            }
        }
        this.install_kernel(runtime)?;
        // Loading restores the saved expansion values; put back the spec's. The thread
        // contexts survive a load, but set them again rather than rely on it.
        this.index
            .change_expansion_search(spec.hnsw.ef_search as usize);
        this.grow_to(this.index.size())?;
        Ok(self)
    }
}
