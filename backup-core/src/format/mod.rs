//! The on-store format: where objects live ([`layout`]) and what the manifest says ([`manifest`]), and
//! the sealed manifest of encrypted backups ([`sealed`]).
//! Normative spec: `docs/FORMAT.md`.

pub mod layout;
pub mod manifest;
pub mod sealed;
