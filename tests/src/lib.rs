//! End-to-end tests live in `tests/`; this library is empty on purpose, except that it compiles
//! the Rust examples of the README and the guides under `docs/` as doctests, so they cannot rot.

#[cfg(doctest)]
#[doc = include_str!("../../docs/hookwire-core.md")]
struct CoreGuide;

#[cfg(doctest)]
#[doc = include_str!("../../docs/hookwire-patch.md")]
struct PatchGuide;

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct Readme;
