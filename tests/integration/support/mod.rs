//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod moto;
pub mod sandbox;
pub mod trees;
