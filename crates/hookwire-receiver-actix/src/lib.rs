//! actix-web adapter for hookwire-receiver: middleware and FromRequest extractors.
//!
//! This crate is being built; see the workspace README for its scope.
