//! Server-side services of GPU Commons over one store (SQLite or PostgreSQL): sign-in and
//! sessions (`auth`), the fleet read models and demo fleet (`fleet`). The `app` server functions
//! and the `server` JSON API call these; neither writes SQL.

pub mod auth;
mod error;
pub mod fleet;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;

pub use error::{Error, SignInRefusal};

use auth::{AuthConfig, AuthService};
use fleet::FleetService;
use store::Store;

/// All services, cheap to clone (they share one connection pool).
#[derive(Clone)]
pub struct Platform {
    pub store: Store,
    pub auth: AuthService,
    pub fleet: FleetService,
}

impl Platform {
    pub fn new(store: Store, auth: AuthConfig) -> Platform {
        Platform {
            auth: AuthService::new(store.clone(), auth),
            fleet: FleetService::new(store.clone()),
            store,
        }
    }
}

/// The wall clock as the services count time: UTC milliseconds.
pub fn now() -> domain::time::UnixMillis {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    domain::time::UnixMillis(ms)
}
