//! Local directory backend.
