//! Integration tests of lockattr live in this package's test targets.
