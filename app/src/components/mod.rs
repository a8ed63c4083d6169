//! Reusable pieces of the UI.

pub mod live;
pub mod nav;
pub mod session;
pub mod supply;
pub mod wallet;
