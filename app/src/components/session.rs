//! Who is signed in, as one resource every component reads. Rendered on the server from the
//! session cookie, carried into hydration, refreshed after sign-in and sign-out.

use domain::siws::SignedIn;
use leptos::prelude::*;

use crate::errors::AppError;
use crate::functions::auth::current_session;

#[derive(Clone, Copy)]
pub struct Session {
    pub state: Resource<Result<Option<SignedIn>, AppError>>,
    version: RwSignal<u32>,
}

impl Session {
    /// Re-reads the session from the server (after sign-in or sign-out).
    pub fn refresh(&self) {
        self.version.update(|v| *v += 1);
    }

    /// Changes whenever the session may have changed; resources that depend on who is signed in
    /// use it as their source.
    pub fn version(&self) -> u32 {
        self.version.get()
    }

    pub fn signed_in(&self) -> Option<SignedIn> {
        self.state.get().and_then(Result::ok).flatten()
    }
}

pub fn provide_session() {
    let version = RwSignal::new(0u32);
    let state = Resource::new(move || version.get(), |_| current_session());
    provide_context(Session { state, version });
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}
