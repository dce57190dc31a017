//! glacier-backup's engine.
