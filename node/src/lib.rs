//! ipvec node
