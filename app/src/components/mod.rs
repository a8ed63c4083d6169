//! Reusable pieces of the UI.

pub mod nav;
pub mod session;
pub mod supply;
pub mod wallet;
