//! The on-store format: where objects live ([`layout`]) and what the manifest says ([`manifest`]).
//! Normative spec: `docs/FORMAT.md`.

pub mod layout;
pub mod manifest;
