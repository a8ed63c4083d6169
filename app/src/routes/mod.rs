//! One module per page or page group.

pub mod cloud;
pub mod error;
pub mod explorer;
pub mod not_found;
pub mod worker;
