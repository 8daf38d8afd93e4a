//! Integration tests for hookwire-core's public API.

mod known_answers;
mod properties;
mod reasons;
